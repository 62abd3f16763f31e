/*-------------------------------------------------------------------------
 *
 * eventlog.c
 *	  The command side's core: appending events to ledger.events.
 *
 * An append takes three steps.
 *
 *	1. Lock the stream.  A transaction-scoped advisory lock on a 64-bit hash
 *	   of the stream name (field4 = LEDGER_LOCK_STREAM) serializes appenders
 *	   of one stream and nobody else.  It is held to commit, so the next
 *	   appender of the stream sees this one's outcome; two appenders with
 *	   the same expected version therefore never race into the unique index:
 *	   the second waits, then fails the version check with 40001.
 *
 *	2. Read the stream head (last version and its tx_order) with the latest
 *	   snapshot, which after the lock wait includes every committed append to
 *	   the stream, and check expected_version.
 *
 *	3. Insert each event straight into the heap and its indexes
 *	   (ledger_insert_tuple), positions from ledger.events_position_seq.
 *	   The append-only triggers never see these inserts; they refuse all
 *	   others.  Then fold the new events into every live inline projection
 *	   (apply.c), in this transaction.
 *
 * tx_order is the commit-safe ordering key read_all and async consumers
 * follow: max(this transaction's full xid, tx_order of the stream's previous
 * event).  Every event not yet committed when a reader takes its snapshot has
 * tx_order >= the xid of a transaction of this database that the snapshot
 * saw running (or >= its xmax), so a reader that stops below the oldest of
 * them (ledger_log_horizon) never skips an event, and raising to the
 * stream's previous key keeps each stream in version order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "ledger.h"
#include "projection.h"

PG_FUNCTION_INFO_V1(ledger_append);
PG_FUNCTION_INFO_V1(ledger_append_events);

/* the types of ledger.events' columns, as the append forms its rows */
static const Oid events_types[Natts_events] = {
	INT8OID, TEXTOID, INT8OID, TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, XID8OID
};

/*
 * ledger_check_name -- a stream or event type name must be non-NULL (checked
 * by callers, since they know the argument), non-empty and at most
 * LEDGER_MAX_NAME_BYTES bytes.
 */
void
ledger_check_name(text *name, const char *what)
{
	int			len = VARSIZE_ANY_EXHDR(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > LEDGER_MAX_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("It has %d bytes; the limit is %d.",
						   len, LEDGER_MAX_NAME_BYTES)));
}

/*
 * ledger_lock_stream -- take the stream's append lock, held to end of
 * transaction.
 */
void
ledger_lock_stream(text *stream)
{
	uint64		h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(stream),
										VARSIZE_ANY_EXHDR(stream), 0);
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 LEDGER_LOCK_STREAM);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * ledger_begin_stream_scan -- scan a stream's events in version order (from
 * from_version on, if it is above 1) through the (stream, version) index,
 * as seen by snapshot.  End it with ledger_end_stream_scan.
 */
IndexScanDesc
ledger_begin_stream_scan(Relation events, text *stream, int64 from_version,
						 Snapshot snapshot)
{
	Relation	idx = index_open(ledger_catalog()->events_stream_idx, AccessShareLock);
	ScanKeyData keys[2];
	int			nkeys = 1;
	IndexScanDesc scan;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream));
	if (from_version > 1)
		ScanKeyInit(&keys[nkeys++], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
					Int64GetDatum(from_version));
	scan = index_beginscan(events, idx, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

void
ledger_end_stream_scan(IndexScanDesc scan)
{
	Relation	idx = scan->indexRelation;

	index_endscan(scan);
	index_close(idx, AccessShareLock);
}

/*
 * ledger_stream_head -- the last version of a stream and its tx_order, as
 * seen by snapshot.  One backward probe of the (stream, version) index.
 */
LedgerStreamHead
ledger_stream_head(Relation events, text *stream, Snapshot snapshot)
{
	LedgerStreamHead head = {0, InvalidFullTransactionId};
	TupleTableSlot *slot = table_slot_create(events, NULL);
	IndexScanDesc scan = ledger_begin_stream_scan(events, stream, 1, snapshot);

	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		head.version = DatumGetInt64(slot_getattr(slot, Anum_events_version, &isnull));
		head.tx_order = DatumGetFullTransactionId(slot_getattr(slot, Anum_events_tx_order,
															   &isnull));
	}
	ledger_end_stream_scan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return head;
}

/*
 * ledger_next_tx_order -- the ordering key of an event appended now after
 * head: this transaction's full xid, raised to the stream's previous key.
 */
FullTransactionId
ledger_next_tx_order(LedgerStreamHead head)
{
	FullTransactionId mine = GetTopFullTransactionId();

	if (head.version > 0 && FullTransactionIdFollows(head.tx_order, mine))
		return head.tx_order;
	return mine;
}

/*
 * ledger_append_to_stream -- append nevents events to stream atomically.
 *
 * expected_version is LEDGER_ANY_VERSION, 0 (stream must not exist) or the
 * exact current version.  Returns the stream's new version, the position of
 * the last appended event and the append time.  The caller has validated
 * every argument.
 */
LedgerAppended
ledger_append_to_stream(text *stream, int64 expected_version,
						LedgerNewEvent *events, int nevents)
{
	const LedgerCatalog *c = ledger_catalog();
	Relation	rel;
	Snapshot	snapshot;
	LedgerStreamHead head;
	LedgerAppended result;

	rel = table_open(c->events, RowExclusiveLock);
	ledger_lock_stream(stream);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	head = ledger_stream_head(rel, stream, snapshot);
	UnregisterSnapshot(snapshot);

	if (expected_version != LEDGER_ANY_VERSION && expected_version != head.version)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("stream \"%s\" is at version " INT64_FORMAT ", expected version " INT64_FORMAT,
						text_to_cstring(stream), head.version, expected_version),
				 errdetail("Stream: %s; expected version: " INT64_FORMAT "; actual version: " INT64_FORMAT ".",
						   text_to_cstring(stream), expected_version, head.version),
				 head.version > expected_version ?
				 errhint("Another writer appended to the stream first. Reload it and retry.") :
				 errhint("The stream has fewer events than expected. Reload it and retry.")));

	result = ledger_append_at_head(rel, stream, head, events, nevents);
	table_close(rel, NoLock);
	return result;
}

/*
 * ledger_append_at_head -- append after head, which the caller read under
 * the stream's lock (it still holds it).  rel is ledger.events, open with
 * RowExclusiveLock.
 */
LedgerAppended
ledger_append_at_head(Relation rel, text *stream, LedgerStreamHead head,
					  LedgerNewEvent *events, int nevents)
{
	const LedgerCatalog *c = ledger_catalog();
	LedgerAppended result;
	FullTransactionId tx_order;
	TimestampTz now;
	Datum		values[Natts_events];
	bool		nulls[Natts_events] = {0};
	int64		position = 0;
	int64	   *positions = palloc(sizeof(int64) * nevents);
	int			i;

	/*
	 * No appends from inside the engine's own work: a trigger on a
	 * projection's table or a function its query calls, run by a fold,
	 * would otherwise append (or post, or close an account) halfway
	 * through another command, under its locks and before it wrote its
	 * read models.
	 */
	if (ledger_maintenance_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot append to stream \"%s\" while a projection is being maintained",
						text_to_cstring(stream)),
				 errdetail("A function or trigger run by a projection's fold, catch-up or rebuild called a command that appends events."),
				 errhint("A projection must be a pure transformation of events: append from the application instead.")));

	tx_order = ledger_next_tx_order(head);
	now = GetCurrentTimestamp();

	values[Anum_events_stream - 1] = PointerGetDatum(stream);
	values[Anum_events_recorded_at - 1] = TimestampTzGetDatum(now);
	values[Anum_events_tx_order - 1] = FullTransactionIdGetDatum(tx_order);

	for (i = 0; i < nevents; i++)
	{
		HeapTuple	tuple;

		position = nextval_internal(c->events_seq, false);
		values[Anum_events_position - 1] = Int64GetDatum(position);
		values[Anum_events_version - 1] = Int64GetDatum(head.version + i + 1);
		values[Anum_events_type - 1] = PointerGetDatum(events[i].type);
		values[Anum_events_data - 1] = JsonbPGetDatum(events[i].data);
		values[Anum_events_metadata - 1] = JsonbPGetDatum(events[i].metadata);

		tuple = ledger_form_row(rel, events_types, Natts_events, values, nulls);
		ledger_insert_tuple(rel, tuple);
		heap_freetuple(tuple);
		positions[i] = position;
	}

	CommandCounterIncrement();

	/* inline projections see the events in this very transaction */
	ledger_apply_inline(positions, nevents);

	result.version = head.version + nevents;
	result.position = position;
	result.recorded_at = now;
	return result;
}

static int64
get_expected_version(FunctionCallInfo fcinfo, int argno)
{
	int64		v;

	if (PG_ARGISNULL(argno))
		return LEDGER_ANY_VERSION;
	v = PG_GETARG_INT64(argno);
	if (v < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must not be negative"),
				 errdetail("Got " INT64_FORMAT "; use NULL for any version, 0 for a new stream.", v)));
	return v;
}

/*
 * check_not_reserved -- the ledger's own event types enter the log only
 * through its commands, which keep the read models in step.  Anything else
 * appending them would forge postings the balances never saw.
 */
static void
check_not_reserved(text *type)
{
	static const char *const reserved[] = {
		"CurrencyRegistered", "AccountOpened", "AccountClosed", "TransferPosted"
	};
	size_t		i;

	for (i = 0; i < lengthof(reserved); i++)
		if ((size_t) VARSIZE_ANY_EXHDR(type) == strlen(reserved[i]) &&
			memcmp(VARDATA_ANY(type), reserved[i], strlen(reserved[i])) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" is reserved for the ledger commands", reserved[i]),
					 errhint("Use ledger.register_currency, open_account, close_account, transfer or post_entry.")));
}

static text *
get_name_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
	t = PG_GETARG_TEXT_PP(argno);
	ledger_check_name(t, what);
	return t;
}

/* is j the JSON scalar null? */
static bool
ledger_jsonb_is_null(Jsonb *j)
{
	JsonbValue	v;

	return JsonbExtractScalar(&j->root, &v) && v.type == jbvNull;
}

/*
 * ledger.append(stream, type, data, expected_version, metadata) -> bigint
 */
Datum
ledger_append(PG_FUNCTION_ARGS)
{
	text	   *stream = get_name_arg(fcinfo, 0, "stream");
	LedgerNewEvent ev;
	int64		expected;

	PreventCommandIfReadOnly("ledger.append()");

	ev.type = get_name_arg(fcinfo, 1, "event type");
	check_not_reserved(ev.type);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event data must not be NULL"),
				 errhint("Use '{}' for an event without a body.")));
	ev.data = PG_GETARG_JSONB_P(2);
	expected = get_expected_version(fcinfo, 3);
	ev.metadata = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	/* SQL NULL and JSON null alike become {}, as in append_events */
	if (ev.metadata == NULL || ledger_jsonb_is_null(ev.metadata))
		ev.metadata = ledger_empty_object();

	PG_RETURN_INT64(ledger_append_to_stream(stream, expected, &ev, 1).version);
}

/*
 * jsonb_member -- the value of key in an object container, or NULL.
 */
static JsonbValue *
jsonb_member(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/*
 * ledger.append_events(stream, events, expected_version) -> bigint
 *
 * events is a non-empty JSON array of objects {"type": string, "data": any,
 * "metadata": any}.  A missing data becomes {}; a missing or JSON null
 * metadata becomes {}.
 */
Datum
ledger_append_events(PG_FUNCTION_ARGS)
{
	text	   *stream = get_name_arg(fcinfo, 0, "stream");
	Jsonb	   *arr;
	int64		expected;
	int			n;
	int			i;
	LedgerNewEvent *events;

	PreventCommandIfReadOnly("ledger.append_events()");

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("events must not be NULL")));
	arr = PG_GETARG_JSONB_P(1);
	expected = get_expected_version(fcinfo, 2);

	if (!JB_ROOT_IS_ARRAY(arr) || JB_ROOT_IS_SCALAR(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array of event objects")));
	n = JB_ROOT_COUNT(arr);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array")));

	events = palloc(sizeof(LedgerNewEvent) * n);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&arr->root, i);
		JsonbValue *v;
		JsonbContainer *obj;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("events[%d] is not a JSON object", i)));
		obj = elem->val.binary.data;

		v = jsonb_member(obj, "type");
		if (v == NULL || v->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("events[%d] needs a \"type\" that is a JSON string", i)));
		events[i].type = cstring_to_text_with_len(v->val.string.val, v->val.string.len);
		ledger_check_name(events[i].type, "event type");
		check_not_reserved(events[i].type);

		v = jsonb_member(obj, "data");
		events[i].data = (v == NULL) ? ledger_empty_object() : JsonbValueToJsonb(v);
		v = jsonb_member(obj, "metadata");
		events[i].metadata = (v == NULL || v->type == jbvNull) ? ledger_empty_object() : JsonbValueToJsonb(v);
	}

	PG_RETURN_INT64(ledger_append_to_stream(stream, expected, events, n).version);
}
