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

#include "access/table.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

#include "ledger_cqrs.h"
#include "ledger.h"

PG_FUNCTION_INFO_V1(ledger_save_snapshot);

/* how many snapshots of one stream are kept */
#define STREAM_SNAPSHOTS_KEPT 3

/*
 * ledger.save_snapshot(stream, version, state) -> void
 *
 * A version beyond the stream's current version raises 22023; one at or
 * below the latest snapshot's is a no-op.  Saves of one stream are
 * serialized by an advisory lock of their own, so they never wait for
 * appenders of the stream.
 */
Datum
ledger_save_snapshot(PG_FUNCTION_ARGS)
{
	text	   *stream;
	int64		version;
	Jsonb	   *state;
	Relation	events;
	LedgerStreamHead head;
	Snapshot	snap;
	Oid			types[3] = {TEXTOID, INT8OID, JSONBOID};
	Datum		values[3];
	bool		isnull;
	int64		latest;

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
	if (version < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("snapshot version must be at least 1, not " INT64_FORMAT, version)));

	ledger_lock_hash(hash_bytes_extended((const unsigned char *) VARDATA_ANY(stream),
										 VARSIZE_ANY_EXHDR(stream), 0),
					 LEDGER_LOCK_SNAPSHOT, ExclusiveLock);

	events = table_open(ledger_catalog()->events, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	head = ledger_stream_head(events, stream, snap);
	UnregisterSnapshot(snap);
	table_close(events, AccessShareLock);
	if (version > head.version)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot snapshot stream \"%s\" at version " INT64_FORMAT ": it is at version " INT64_FORMAT,
						text_to_cstring(stream), version, head.version)));

	values[0] = PointerGetDatum(stream);
	values[1] = Int64GetDatum(version);
	values[2] = JsonbPGetDatum(state);
	SPI_connect();
	if (SPI_execute_with_args("SELECT pg_catalog.max(version) FROM ledger.stream_snapshots"
							  " WHERE stream OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ledger.stream_snapshots");
	latest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || version > latest)
	{
		if (SPI_execute_with_args("INSERT INTO ledger.stream_snapshots (stream, version, state)"
								  " VALUES ($1, $2, $3)",
								  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not save the snapshot");
		if (SPI_execute_with_args(psprintf("DELETE FROM ledger.stream_snapshots"
										   " WHERE stream OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.<) ("
										   " SELECT version FROM ledger.stream_snapshots WHERE stream OPERATOR(pg_catalog.=) $1"
										   " ORDER BY version DESC OFFSET %d LIMIT 1)", STREAM_SNAPSHOTS_KEPT - 1),
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not prune stream snapshots");
	}
	SPI_finish();
	PG_RETURN_VOID();
}
