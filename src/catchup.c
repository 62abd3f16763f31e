/*-------------------------------------------------------------------------
 *
 * catchup.c
 *	  Catch-up of async projections, retroactive fills, and the hand-over
 *	  of a filled inline projection to the appending transactions.
 *
 * Each projection that is not maintained inline follows the log with a
 * cursor (checkpoint_order, checkpoint_position) in ledger.projections,
 * exactly as a read_all consumer does: a batch is the events after the
 * cursor whose tx_order is below the horizon of this transaction's snapshot
 * (ledger_log_horizon), all of them committed.  The batch's rows and the
 * new cursor are written in the same transaction, so a crash never applies
 * an event twice or skips one.  The registry row is locked FOR UPDATE SKIP
 * LOCKED, so the worker and a manual catch_up never fold the same batch
 * twice.
 *
 * An inline projection created over a large log starts in state
 * catching_up: appenders leave it alone and catch-up fills it in batches.
 * When a batch reaches the horizon, the hand-over takes SHARE lock on
 * ledger.events (waiting for in-flight appenders, holding new ones until
 * commit), folds whatever committed since, marks the projection live and
 * invalidates every backend's registry cache.  Appenders that take their
 * lock after that commit fold inline; none can have appended in between.
 *
 * An async projection that fails on an event goes to state failed with
 * last_error and stops advancing; appends go on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "readlog.h"
#include "projection.h"

int			ledger_fill_batch_size = 10000;
int			ledger_fill_sync_limit = 10000;

typedef struct BatchEnd
{
	FullTransactionId order;
	int64		position;
} BatchEnd;

static bool
note_batch_end(TupleTableSlot *slot, void *arg)
{
	BatchEnd   *end = (BatchEnd *) arg;
	bool		isnull;

	end->order = DatumGetFullTransactionId(slot_getattr(slot, Anum_events_tx_order, &isnull));
	end->position = DatumGetInt64(slot_getattr(slot, Anum_events_position, &isnull));
	return true;
}

/*
 * count_batch -- how many events follow the cursor below horizon (at most
 * max, -1 for no limit), and the cursor after the last of them.
 */
static int64
count_batch(FullTransactionId from_order, int64 from_position,
			FullTransactionId horizon, int64 max, BatchEnd *end)
{
	Relation	events = table_open(ledger_catalog()->events, AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	int64		n;

	end->order = from_order;
	end->position = from_position;
	n = ledger_scan_log(events, snap, from_order, from_position, horizon, max,
						note_batch_end, end);
	UnregisterSnapshot(snap);
	table_close(events, AccessShareLock);
	return n;
}

/*
 * ledger_error_is_transient -- an error that says nothing about the events
 * or a definition, and may not happen again: a cancel or timeout, a
 * shutdown, a deadlock or serialization failure, a lock not available,
 * resources running out, an I/O error.  Such an error is never taken as a
 * projection failing, and never swallowed.
 */
bool
ledger_error_is_transient(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:	/* 40: serialization, deadlock */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53: out of memory, disk full */
		case ERRCODE_OPERATOR_INTERVENTION: /* 57: cancel, timeout, shutdown */
		case ERRCODE_SYSTEM_ERROR:	/* 58: I/O */
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	}
}

/*
 * ledger_in_subxact -- ledger_try_in_subxact, except that a transient error
 * (ledger_error_is_transient) is raised again instead of returned: a cancel
 * stays a cancel.  Caller is connected to SPI.
 */
ErrorData *
ledger_in_subxact(void (*fn) (void *arg), void *arg)
{
	ErrorData  *edata = ledger_try_in_subxact(fn, arg);

	if (edata != NULL && ledger_error_is_transient(edata->sqlerrcode))
		ReThrowError(edata);
	return edata;
}

typedef struct SnapshotJob
{
	Projection *p;
	BatchEnd   *end;
	int64		applied;
} SnapshotJob;

static void
snapshot_job(void *arg)
{
	SnapshotJob *job = arg;

	(void) ledger_take_projection_snapshot(job->p->name, ledger_projection_def(job->p),
										   job->p->target, job->p->owner, job->end->order,
										   job->end->position, job->applied, false);
}

/*
 * maybe_snapshot -- a snapshot each time a projection that follows the log
 * crosses a multiple of projection_snapshot_interval applied events.  One
 * that fails (a table too large for one jsonb value, say) is a WARNING:
 * the batch it follows stands, and catch-up goes on.
 */
static void
maybe_snapshot(Projection *p, BatchEnd *end, int64 before, int64 applied)
{
	int64		every = ledger_projection_snapshot_interval;
	SnapshotJob job = {p, end, before + applied};
	ErrorData  *edata;

	if (every <= 0 || applied <= 0 || (before + applied) / every == before / every)
		return;
	if ((edata = ledger_in_subxact(snapshot_job, &job)) != NULL)
		ereport(WARNING,
				(errmsg("could not snapshot projection \"%s\": %s", p->name, edata->message),
				 errdetail("Catch-up goes on; a rebuild replays from an older snapshot or the log.")));
}

static void
save_cursor(const char *name, BatchEnd *end, int64 applied, const char *state)
{
	Oid			types[5] = {TEXTOID, XID8OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[5];

	values[0] = CStringGetTextDatum(name);
	values[1] = FullTransactionIdGetDatum(end->order);
	values[2] = Int64GetDatum(end->position);
	values[3] = Int64GetDatum(applied);
	values[4] = CStringGetTextDatum(state);
	if (SPI_execute_with_args("UPDATE ledger.projections SET checkpoint_order = $2,"
							  " checkpoint_position = $3,"
							  " events_applied = events_applied OPERATOR(pg_catalog.+) $4,"
							  " state = $5, updated_at = pg_catalog.clock_timestamp()"
							  " WHERE name OPERATOR(pg_catalog.=) $1",
							  5, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not save the checkpoint of projection \"%s\"", name);
}

typedef struct FoldJob
{
	Projection *p;
	FullTransactionId from_order;
	int64		from_position;
	BatchEnd   *end;
	bool		unbounded;
} FoldJob;

static void
fold_job(void *arg)
{
	FoldJob    *job = arg;

	ledger_check_owner(job->p->owner, job->p->name, job->p->target);
	ledger_fold_range(ledger_projection_def(job->p), job->p->target, job->p->owner,
					  job->from_order, job->from_position,
					  job->end->order, job->end->position, job->unbounded, 0);
}

/*
 * fold_or_fail -- fold a batch in a subtransaction.  An error marks the
 * projection failed, with the error as last_error, and returns false: an
 * async one stops advancing, an inline one being filled never goes live
 * (its appenders would fail the same way).  Either way the other
 * projections go on.
 */
static bool
fold_or_fail(Projection *p, FullTransactionId from_order, int64 from_position,
			 BatchEnd *end, bool unbounded)
{
	FoldJob		job = {p, from_order, from_position, end, unbounded};
	ErrorData  *edata;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	if ((edata = ledger_in_subxact(fold_job, &job)) == NULL)
		return true;
	values[0] = CStringGetTextDatum(p->name);
	values[1] = CStringGetTextDatum(edata->message);
	if (SPI_execute_with_args("UPDATE ledger.projections SET state = 'failed', last_error = $2,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE name OPERATOR(pg_catalog.=) $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not mark projection \"%s\" failed", p->name);
	ereport(WARNING,
			(errmsg("projection \"%s\" failed and stops advancing: %s", p->name, edata->message),
			 edata->detail ? errdetail("%s", edata->detail) : 0,
			 errhint("Events do not change: fix the definition by dropping and re-creating the projection, or, if the cause has gone (a function it calls, re-created), retry with ledger.rebuild_projection('%s').", p->name)));
	return false;
}

/*
 * empty_for_refill -- a restored projection starts over from an empty table.
 */
static void
empty_for_refill(Projection *p, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	volatile int rc = 0;
	LedgerUserSwitch save;

	/* as the table's owner: its triggers must not run with our rights */
	ledger_maintenance_depth++;
	ledger_become(p->owner, true, &save);
	PG_TRY();
	{
		rc = SPI_execute(psprintf("DELETE FROM %s", p->target), false, 0);
	}
	PG_FINALLY();
	{
		ledger_restore_user(&save);
		ledger_maintenance_depth--;
	}
	PG_END_TRY();
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "could not empty %s", p->target);
	if (SPI_execute_with_args("UPDATE ledger.projections SET needs_reset = false"
							  " WHERE name OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not reset projection \"%s\"", name);
}

static Projection *
find_projection(const char *name)
{
	ListCell   *lc;

	foreach(lc, ledger_user_projections())
	{
		Projection *p = lfirst(lc);

		if (strcmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

static int64 catch_up_pinned(const char *name, int64 max_events, bool allow_handover);

/*
 * ledger_catch_up_projection -- apply up to max_events (-1: all) pending
 * events to one projection that follows the log (async, or being filled).
 * Returns how many were applied.  Caller is connected to SPI with a fixed
 * search_path.  The cached list is current, then pinned while its entry
 * is in use, since the fold runs user code that may append.
 */
int64
ledger_catch_up_projection(const char *name, int64 max_events, bool allow_handover)
{
	int			pins;
	volatile int64 total = 0;

	(void) ledger_user_projections();
	pins = ledger_pin_projections();
	PG_TRY();
	{
		total = catch_up_pinned(name, max_events, allow_handover);
	}
	PG_FINALLY();
	{
		ledger_unpin_projections(pins);
	}
	PG_END_TRY();
	return total;
}

static int64
catch_up_pinned(const char *name, int64 max_events, bool allow_handover)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	char	   *mode;
	char	   *state;
	Projection *p;
	FullTransactionId cursor_order;
	int64		cursor_position;
	FullTransactionId horizon;
	BatchEnd	end;
	int64		n;
	int64		total = 0;
	int64		before;

	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT mode, state, checkpoint_order, checkpoint_position, needs_reset, events_applied"
							  " FROM ledger.projections WHERE name OPERATOR(pg_catalog.=) $1"
							  " AND kind OPERATOR(pg_catalog.=) 'user' FOR UPDATE SKIP LOCKED",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock projection \"%s\"", name);
	if (SPI_processed == 0)
		return 0;				/* being caught up or rebuilt by someone else */
	row = SPI_copytuple(SPI_tuptable->vals[0]);
	desc = SPI_tuptable->tupdesc;
	mode = SPI_getvalue(row, desc, 1);
	state = SPI_getvalue(row, desc, 2);
	d = SPI_getbinval(row, desc, 3, &isnull);
	cursor_order = isnull ? FullTransactionIdFromU64(0) : DatumGetFullTransactionId(d);
	cursor_position = DatumGetInt64(SPI_getbinval(row, desc, 4, &isnull));
	before = DatumGetInt64(SPI_getbinval(row, desc, 6, &isnull));

	if (strcmp(state, "failed") == 0 || strcmp(state, "rebuilding") == 0)
		return 0;
	if (strcmp(mode, "inline") == 0 && strcmp(state, "live") == 0)
		return 0;				/* the appenders keep it */

	p = find_projection(name);
	if (p == NULL)
		return 0;

	/* restored from a dump: start over from an empty table */
	if (DatumGetBool(SPI_getbinval(row, desc, 5, &isnull)))
	{
		empty_for_refill(p, name);
		before = 0;
	}

	/* events below the horizon of the snapshot our fold will read with */
	horizon = ledger_log_horizon(GetTransactionSnapshot());
	n = count_batch(cursor_order, cursor_position, horizon,
					max_events >= 0 ? max_events : -1, &end);
	if (n > 0)
	{
		if (!fold_or_fail(p, cursor_order, cursor_position, &end, false))
			return 0;
		total += n;
	}
	if (max_events >= 0 && n >= max_events)
	{
		save_cursor(name, &end, n, state);
		maybe_snapshot(p, &end, before, n);
		return total;			/* more to do */
	}

	/* at the horizon */
	if (p->async)
	{
		if (n > 0 || strcmp(state, "live") != 0)
			save_cursor(name, &end, n, "live");
		maybe_snapshot(p, &end, before, n);
		return total;
	}
	if (!allow_handover || IsolationUsesXactSnapshot())
	{
		if (n > 0)
			save_cursor(name, &end, n, state);
		maybe_snapshot(p, &end, before, n);
		return total;
	}

	/* hand-over: no appender can run between this fold and our commit */
	ledger_lock_events(ShareLock);
	{
		BatchEnd	last;
		int64		rest = count_batch(end.order, end.position,
									   FullTransactionIdFromU64(PG_UINT64_MAX), -1, &last);

		if (rest > 0 && !fold_or_fail(p, end.order, end.position, &last, true))
		{
			/* the batch before it stands: its cursor with it */
			save_cursor(name, &end, n, "failed");
			return total;
		}
		save_cursor(name, &last, n + rest, "live");
		total += rest;
	}
	ledger_projections_changed();
	return total;
}

/*
 * ledger_catch_up_all -- catch up every projection that follows the log.
 */
int64
ledger_catch_up_all(int64 max_events)
{
	ListCell   *lc;
	List	   *names = NIL;
	int64		total = 0;

	foreach(lc, ledger_user_projections())
	{
		Projection *p = lfirst(lc);

		if (p->state == 'f' || (!p->async && p->state == 'l'))
			continue;
		names = lappend(names, pstrdup(p->name));
	}
	foreach(lc, names)
		total += ledger_catch_up_projection(lfirst(lc), max_events, true);
	ledger_auto_snapshot_inline();
	return total;
}
