/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  Stream snapshots for users' own aggregates: save_snapshot.
 *	  (load_snapshot is plain SQL; balance snapshots are written by the
 *	  posting fold, posting.c; projection snapshots live in projection.c.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ledger_cqrs.h"
#include "ledger.h"

PG_FUNCTION_INFO_V1(ledger_save_snapshot);

/* how many snapshots of one stream are kept */
#define STREAM_SNAPSHOTS_KEPT 3

/* columns of ledger.stream_snapshots */
#define Anum_stream_snapshots_stream	1
#define Anum_stream_snapshots_version	2
#define Anum_stream_snapshots_state		3
#define Anum_stream_snapshots_taken_at	4
#define Natts_stream_snapshots			4

static const Oid stream_snapshots_types[Natts_stream_snapshots] = {
	TEXTOID, INT8OID, JSONBOID, TIMESTAMPTZOID
};

/*
 * ledger.save_snapshot(stream, version, state) -> void
 *
 * One at or below the latest snapshot's version is a no-op; otherwise a
 * version below 1 or beyond the stream's current version raises 22023.
 * Saves of one stream are serialized by an advisory lock of their own, so
 * they never wait for appenders of the stream, and they read the stored
 * snapshots with a snapshot taken under that lock: every save committed
 * before it counts, whatever the caller's isolation level (a transaction
 * snapshot would miss a save committed since, and then collide with it).
 * The newest STREAM_SNAPSHOTS_KEPT are kept.
 */
Datum
ledger_save_snapshot(PG_FUNCTION_ARGS)
{
	const LedgerCatalog *c;
	text	   *stream;
	int64		version;
	Jsonb	   *state;
	Relation	events;
	Relation	snapshots;
	Relation	idx;
	LedgerStreamHead head;
	Snapshot	snap;
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	List	   *older = NIL;
	int			nstored = 0;
	int64		latest = 0;
	ListCell   *lc;

	PreventCommandIfReadOnly("ledger.save_snapshot()");

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("version must not be NULL")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("state must not be NULL")));
	stream = PG_GETARG_TEXT_PP(0);
	ledger_check_name(stream, "stream");
	version = PG_GETARG_INT64(1);
	state = PG_GETARG_JSONB_P(2);
	c = ledger_catalog();

	ledger_lock_hash(hash_bytes_extended((const unsigned char *) VARDATA_ANY(stream),
										 VARSIZE_ANY_EXHDR(stream), 0),
					 LEDGER_LOCK_SNAPSHOT, ExclusiveLock);
	snap = RegisterSnapshot(GetLatestSnapshot());

	/* the stored snapshots of the stream, newest first */
	snapshots = table_open(c->stream_snapshots, RowExclusiveLock);
	idx = index_open(c->stream_snapshots_pkey, AccessShareLock);
	slot = table_slot_create(snapshots, NULL);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(stream));
	scan = index_beginscan(snapshots, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		if (nstored++ == 0)
			latest = DatumGetInt64(slot_getattr(slot, Anum_stream_snapshots_version, &isnull));
		/* the new one and the newest KEPT - 1 of these stay */
		else if (nstored >= STREAM_SNAPSHOTS_KEPT)
		{
			ItemPointer tid = palloc(sizeof(ItemPointerData));

			*tid = slot->tts_tid;
			older = lappend(older, tid);
		}
	}
	index_endscan(scan);
	index_close(idx, AccessShareLock);
	ExecDropSingleTupleTableSlot(slot);

	if (nstored > 0 && version <= latest)
	{
		table_close(snapshots, RowExclusiveLock);
		UnregisterSnapshot(snap);
		PG_RETURN_VOID();
	}
	if (version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("snapshot version must be at least 1, not " INT64_FORMAT, version)));
	events = table_open(c->events, AccessShareLock);
	head = ledger_stream_head(events, stream, snap);
	table_close(events, AccessShareLock);
	UnregisterSnapshot(snap);
	if (version > head.version)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot snapshot stream \"%s\" at version " INT64_FORMAT ": it is at version " INT64_FORMAT,
						text_to_cstring(stream), version, head.version)));

	{
		Datum		values[Natts_stream_snapshots];
		bool		nulls[Natts_stream_snapshots] = {false};
		HeapTuple	tup;

		values[Anum_stream_snapshots_stream - 1] = PointerGetDatum(stream);
		values[Anum_stream_snapshots_version - 1] = Int64GetDatum(version);
		values[Anum_stream_snapshots_state - 1] = JsonbPGetDatum(state);
		values[Anum_stream_snapshots_taken_at - 1] =
			TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		tup = ledger_form_row(snapshots, stream_snapshots_types, Natts_stream_snapshots,
							  values, nulls);
		ledger_insert_tuple(snapshots, tup);
		heap_freetuple(tup);
	}
	/* nobody else deletes them: saves of the stream wait for our lock */
	foreach(lc, older)
		simple_heap_delete(snapshots, (ItemPointer) lfirst(lc));
	/* the next save in this statement sees this one */
	CommandCounterIncrement();
	table_close(snapshots, RowExclusiveLock);
	PG_RETURN_VOID();
}
