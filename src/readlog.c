/*-------------------------------------------------------------------------
 *
 * readlog.c
 *	  Reading the event log: stream_version, read_stream and read_all.
 *
 * read_all is for consumers outside the transaction that appends: it must
 * never let them skip an event whose transaction took a lower position but
 * committed later.  It delivers in (tx_order, position) order and only events
 * whose tx_order is below the horizon of the reading snapshot, the oldest
 * transaction of this database it saw running (ledger_log_horizon): every
 * such event is committed and visible, and every event not yet committed
 * has a tx_order at or above it (see eventlog.c), so it sorts after the
 * cursor once it commits.
 *
 * The cursor `after` is the position of the last event a consumer received
 * from read_all (0 to start).  It is turned back into (tx_order, position)
 * with one primary-key probe.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "readlog.h"

PG_FUNCTION_INFO_V1(ledger_stream_version);
PG_FUNCTION_INFO_V1(ledger_read_stream);
PG_FUNCTION_INFO_V1(ledger_read_all);

static text *
stream_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be NULL")));
	t = PG_GETARG_TEXT_PP(argno);
	ledger_check_name(t, "stream");
	return t;
}

/* max_count: NULL means no limit, negative is an error. */
static int64
max_count_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		n;

	if (PG_ARGISNULL(argno))
		return -1;
	n = PG_GETARG_INT32(argno);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative"),
				 errdetail("Got %d; use NULL for no limit.", n)));
	return n;
}

/*
 * ledger_widen_xid -- the full transaction id of a recent 32-bit xid, such as
 * a snapshot's xmin, relative to the next full xid.
 */
FullTransactionId
ledger_widen_xid(TransactionId xid)
{
	FullTransactionId next = ReadNextFullTransactionId();
	uint32		epoch = EpochFromFullTransactionId(next);

	if (!TransactionIdIsNormal(xid))
		return FullTransactionIdFromEpochAndXid(0, xid);
	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

/*
 * prepared_xact_database -- the database of prepared transaction xid, as
 * pg_prepared_xacts shows it, or InvalidOid if it is not listed there.
 */
static Oid
prepared_xact_database(TransactionId xid)
{
	static SPIPlanPtr plan = NULL;
	Datum		arg = TransactionIdGetDatum(xid);
	Oid			db = InvalidOid;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	if (plan == NULL)
	{
		Oid			argtype = XIDOID;
		SPIPlanPtr	p = SPI_prepare("SELECT dbid FROM pg_catalog.pg_prepared_xact()"
									" WHERE transaction OPERATOR(pg_catalog.=) $1",
									1, &argtype);

		if (p == NULL)
			elog(ERROR, "could not prepare the prepared transactions' lookup");
		SPI_keepplan(p);
		plan = p;
	}
	if (SPI_execute_plan(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_prepared_xact()");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			db = DatumGetObjectId(d);
	}
	SPI_finish();
	return db;
}

/*
 * xid_of_other_database -- whether top-level xid, running when a snapshot
 * was taken, is proven to be a transaction of another database, which
 * cannot have appended to this database's log.  Whatever is not proven so
 * counts as this database's: a transaction that ended since the snapshot,
 * one whose database cannot be told (InvalidOid).
 *
 * A database read from a process array entry is only believed if xid is
 * found running again afterwards: a transaction running before and after
 * the read held that entry throughout (a backend keeps its entry, and its
 * database, until it exits; a prepared transaction's entry is not reused
 * before COMMIT or ROLLBACK PREPARED removes it from the array).
 */
static bool
xid_of_other_database(TransactionId xid)
{
	int			pid = BackendXidGetPid(xid);
	Oid			db = InvalidOid;

	if (pid != 0)
	{
		PGPROC	   *proc = BackendPidGetProc(pid);

		if (proc != NULL)
			db = proc->databaseId;
		if (BackendXidGetPid(xid) != pid)
			return false;
	}
	else
	{
		/* no backend: prepared, or ended since the snapshot */
		if (!TransactionIdIsInProgress(xid))
			return false;
		db = prepared_xact_database(xid);
		if (!TransactionIdIsInProgress(xid))
			return false;
	}
	return OidIsValid(db) && db != MyDatabaseId;
}

static int
xid_order(const void *a, const void *b)
{
	TransactionId x = *(const TransactionId *) a;
	TransactionId y = *(const TransactionId *) b;

	return TransactionIdPrecedes(x, y) ? -1 : TransactionIdPrecedes(y, x) ? 1 : 0;
}

/*
 * ledger_log_horizon -- the tx_order below which every event is settled for
 * this snapshot: the xid of the oldest transaction of this database still
 * running when it was taken (its xmax if none).
 *
 * Only a transaction connected to this database can append to its log:
 * a backend, an apply worker, a restore, or a prepared transaction of this
 * database.  The snapshot's xmin is the oldest running transaction of the
 * whole cluster; the horizon skips those proven to belong to another
 * database (xid_of_other_database), in xid order from the oldest, and
 * stops at the first that is not.  Every transaction this snapshot does not
 * see as committed is then either one skipped (another database's, no
 * events here), or at or above the horizon: in the snapshot's running
 * list, this transaction, or at or above its xmax.  Its events' tx_order is
 * at least its xid, so at or above the horizon.
 *
 * A snapshot taken during recovery has no database for the transactions
 * of the primary: there the horizon stays the snapshot's xmin.
 */
FullTransactionId
ledger_log_horizon(Snapshot snapshot)
{
	TransactionId horizon = snapshot->xmax;
	TransactionId mine = GetTopTransactionIdIfAny();
	TransactionId *running;
	uint32		i;

	if (snapshot->takenDuringRecovery)
		return ledger_widen_xid(snapshot->xmin);

	/* not in the snapshot's running list, but running */
	if (TransactionIdIsNormal(mine) && TransactionIdPrecedes(mine, horizon))
		horizon = mine;

	if (snapshot->xcnt == 0)	/* xip may then be NULL */
		return ledger_widen_xid(horizon);
	running = palloc(sizeof(TransactionId) * snapshot->xcnt);
	memcpy(running, snapshot->xip, sizeof(TransactionId) * snapshot->xcnt);
	qsort(running, snapshot->xcnt, sizeof(TransactionId), xid_order);
	for (i = 0; i < snapshot->xcnt && TransactionIdPrecedes(running[i], horizon); i++)
	{
		if (!xid_of_other_database(running[i]))
		{
			horizon = running[i];
			break;
		}
	}
	pfree(running);
	return ledger_widen_xid(horizon);
}

/*
 * ledger_tx_order_of -- the tx_order of the event at position, which must be
 * a committed event: the first half of a read_all cursor.
 */
FullTransactionId
ledger_tx_order_of(Relation events, int64 position, Snapshot snapshot)
{
	const LedgerCatalog *c = ledger_catalog();
	Relation	idx = index_open(c->events_pkey, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(events, NULL);
	IndexScanDesc scan;
	ScanKeyData key;
	FullTransactionId result = InvalidFullTransactionId;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(position));
	scan = index_beginscan(events, idx, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;

		result = DatumGetFullTransactionId(slot_getattr(slot, Anum_events_tx_order, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);

	if (!FullTransactionIdIsValid(result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no event at position " INT64_FORMAT, position),
				 errhint("Pass the position of the last event read_all returned, or 0 to start from the beginning.")));
	return result;
}

/*
 * ledger_scan_log -- feed committed events after the cursor (after_order,
 * after_position), in (tx_order, position) order and below horizon, to
 * callback until it returns false or max_count events were fed (-1: no
 * limit).  Returns the number of events fed.
 *
 * The cursor is a row comparison, (tx_order, position) > (after_order,
 * after_position), as the executor builds one for that SQL: the btree
 * descends straight to the first event after the cursor, also inside one
 * transaction's events (a restore's are all of one tx_order), instead of
 * reading every earlier event of the cursor's tx_order again.
 */
int64
ledger_scan_log(Relation events, Snapshot snapshot,
				FullTransactionId after_order, int64 after_position,
				FullTransactionId horizon, int64 max_count,
				ledger_event_callback callback, void *arg)
{
	const LedgerCatalog *c = ledger_catalog();
	Relation	idx = index_open(c->events_order_idx, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(events, NULL);
	IndexScanDesc scan;
	ScanKeyData keys[2];
	ScanKeyData cursor[2];
	int			nkeys = 0;
	int64		n = 0;

	if (max_count == 0)
		goto done;

	if (after_position > 0)
	{
		/* members compare with the btree's 3-way support functions */
		ScanKeyEntryInitialize(&cursor[0], SK_ROW_MEMBER, 1, BTGreaterStrategyNumber,
							   InvalidOid, InvalidOid, F_XID8CMP,
							   FullTransactionIdGetDatum(after_order));
		ScanKeyEntryInitialize(&cursor[1], SK_ROW_MEMBER | SK_ROW_END, 2,
							   BTGreaterStrategyNumber, InvalidOid, InvalidOid,
							   F_BTINT8CMP, Int64GetDatum(after_position));
		/* the header has no function: it points to its members */
		memset(&keys[nkeys], 0, sizeof(ScanKeyData));
		keys[nkeys].sk_flags = SK_ROW_HEADER;
		keys[nkeys].sk_attno = 1;
		keys[nkeys].sk_strategy = BTGreaterStrategyNumber;
		keys[nkeys].sk_argument = PointerGetDatum(cursor);
		nkeys++;
	}
	ScanKeyInit(&keys[nkeys++], 1, BTLessStrategyNumber, F_XID8LT,
				FullTransactionIdGetDatum(horizon));

	scan = index_beginscan(events, idx, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		n++;
		if (!callback(slot, arg) || n == max_count)
			break;
	}
	index_endscan(scan);
done:
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	return n;
}

/* callback of read_all: put the event in the result tuplestore */
static bool
store_event(TupleTableSlot *slot, void *arg)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) arg;

	tuplestore_puttupleslot(rsinfo->setResult, slot);
	return true;
}

static void
init_srf(FunctionCallInfo fcinfo)
{
#if PG_VERSION_NUM >= 150000
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
#else
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize) || rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setDesc = CreateTupleDescCopy(rsinfo->expectedDesc);
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
#endif
}

/*
 * ledger.read_all(after bigint, max_count integer) -> SETOF ledger.events
 */
Datum
ledger_read_all(PG_FUNCTION_ARGS)
{
	int64		after;
	int64		max_count = max_count_arg(fcinfo, 1);
	Snapshot	snapshot = GetActiveSnapshot();
	FullTransactionId after_order = InvalidFullTransactionId;
	Relation	rel;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("after must not be NULL"),
				 errhint("Use 0 to read from the beginning.")));
	after = PG_GETARG_INT64(0);
	if (after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after must not be negative")));

	init_srf(fcinfo);
	rel = table_open(ledger_catalog()->events, AccessShareLock);
	if (after > 0)
		after_order = ledger_tx_order_of(rel, after, snapshot);
	ledger_scan_log(rel, snapshot, after_order, after,
					ledger_log_horizon(snapshot), max_count,
					store_event, fcinfo->resultinfo);
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}

/*
 * ledger.read_stream(stream, from_version, max_count) -> SETOF ledger.events
 */
Datum
ledger_read_stream(PG_FUNCTION_ARGS)
{
	text	   *stream = stream_arg(fcinfo, 0);
	int64		from_version;
	int64		max_count = max_count_arg(fcinfo, 2);
	ReturnSetInfo *rsinfo;
	const LedgerCatalog *c;
	Relation	rel;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	int64		n = 0;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("from_version must not be NULL"),
				 errhint("Use 1 to read from the first event.")));
	from_version = PG_GETARG_INT64(1);
	if (from_version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must not be negative")));

	init_srf(fcinfo);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (max_count == 0)
		return (Datum) 0;

	c = ledger_catalog();
	rel = table_open(c->events, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = ledger_begin_stream_scan(rel, stream, from_version, GetActiveSnapshot());
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		tuplestore_puttupleslot(rsinfo->setResult, slot);
		if (++n == max_count)
			break;
	}
	ledger_end_stream_scan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}

/*
 * ledger.stream_version(stream) -> bigint, 0 for a stream without events
 */
Datum
ledger_stream_version(PG_FUNCTION_ARGS)
{
	text	   *stream = stream_arg(fcinfo, 0);
	Relation	rel = table_open(ledger_catalog()->events, AccessShareLock);
	LedgerStreamHead head = ledger_stream_head(rel, stream, GetActiveSnapshot());

	table_close(rel, AccessShareLock);
	PG_RETURN_INT64(head.version);
}
