/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The projector: a background worker that keeps every async projection
 *	  caught up and fills new projections over large logs.
 *
 * ledger.start_projector() registers a dynamic worker for the current
 * database; with ledger_cqrs in shared_preload_libraries a static one runs
 * in the database named by ledger_cqrs.database, and every other database
 * gets one from its appenders (below).  The worker loops: one
 * transaction calling ledger.catch_up(NULL, batch), again at once if that
 * applied anything, else it sleeps on its latch for at most
 * ledger_cqrs.projector_naptime.
 *
 * One projector per database: a worker holds a session advisory lock
 * (LEDGER_LOCK_PROJECTOR) for its life, and one that cannot get it exits.
 * start_projector() returns the pid of the lock's holder, waiting for a
 * worker it started to take it (or to lose it to another and exit).
 *
 * Appenders wake it: when a transaction that appended commits while some
 * projection follows the log, its commit callback sets the projector's latch
 * (its pid is kept in ledger.projector and cached per backend), so a commit
 * is picked up within milliseconds rather than a naptime.
 *
 * Appenders also bring it back.  A row in ledger.projector says a projector
 * is wanted in this database (stop_projector() deletes it); after a server
 * restart, or once the projector has gone, an appender that finds nobody
 * holding the projector lock starts one when it commits.  With the library
 * preloaded a projector is wanted in every database until stop_projector()
 * is called there, which leaves a row with pid 0 to say so.  A backend tests
 * the lock once per transaction until it has seen a projector hold it, and
 * again only after the pid it wakes turns out to be gone.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/resowner.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "ledger_cqrs.h"
#include "projection.h"

PG_FUNCTION_INFO_V1(ledger_start_projector);
PG_FUNCTION_INFO_V1(ledger_stop_projector);

PGDLLEXPORT void ledger_projector_main(Datum main_arg);

#define PROJECTOR_TYPE "ledger_cqrs projector"

/* bgw_extra of a dynamic projector */
typedef struct ProjectorExtra
{
	Oid			role;			/* to connect as */
	bool		on_demand;		/* started by an appender (check_projector) */
} ProjectorExtra;

StaticAssertDecl(sizeof(ProjectorExtra) <= BGW_EXTRALEN, "ProjectorExtra must fit in bgw_extra");

int			ledger_projector_naptime = 1000;	/* ms */
char	   *ledger_projector_database = NULL;

/* loaded by shared_preload_libraries (inherited by every backend) */
static bool ledger_preloaded = false;

/* backend-local: did this transaction append while projections follow?
 * (also set when it created a projection the projector must fill) */
static bool wake_on_commit = false;
static int	cached_projector_pid = -1;	/* -1: unknown, 0: none recorded */
static bool projector_wanted = false;	/* should one run here? (cached) */
static bool projector_live = false; /* seen holding its lock since cached */
static Oid	projector_relid = InvalidOid;

/* check_projector found none running: start one, as start_as, at commit */
static bool start_on_commit = false;
static Oid	start_as = InvalidOid;
static BackgroundWorkerHandle *started = NULL;	/* the last one we started */
static TimestampTz start_failed_at = 0; /* when that could not be done */

static bool register_projector(Oid role, bool on_demand, BackgroundWorkerHandle **handle);

/* kind: LEDGER_LOCK_PROJECTOR or LEDGER_LOCK_STOPPING */
static void
projector_locktag(LOCKTAG *tag, uint16 kind)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 0, 0, kind);
}

static void
projector_inval_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == projector_relid)
	{
		cached_projector_pid = -1;
		projector_live = false;
	}
}

/* start the projector check_projector asked for; at most once per naptime
 * after a failure, which the server log reports */
static void
start_projector_on_commit(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	if (started != NULL)
		pfree(started);
	started = NULL;
	start_failed_at = register_projector(start_as, true, &started) ? 0 : GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
}

/*
 * may_start -- not while the projector we started last is still on its way
 * to the lock, not within a naptime of a failed start, and not while a
 * stop_projector() is uncommitted (its lock: a worker we started now would
 * only wait for it, holding a worker slot).  Needs no transaction.
 */
static bool
may_start(TimestampTz now)
{
	LOCKTAG		tag;
	pid_t		pid;

	if (started != NULL && GetBackgroundWorkerPid(started, &pid) != BGWH_STOPPED)
		return false;
	if (start_failed_at != 0 &&
		!TimestampDifferenceExceeds(start_failed_at, now, ledger_projector_naptime))
		return false;
	projector_locktag(&tag, LEDGER_LOCK_STOPPING);
	if (LockAcquire(&tag, ShareLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	LockRelease(&tag, ShareLock, true);
	return true;
}

/*
 * Wake the projector once our commit is complete: after the commit record,
 * after the invalidations that tell it about new projections, and after our
 * locks are gone.  XACT_EVENT_COMMIT comes too early for the first two, so
 * this runs in the last resource-release phase of a top-level commit.
 */
static void
worker_release_callback(ResourceReleasePhase phase, bool isCommit, bool isTopLevel, void *arg)
{
	if (phase != RESOURCE_RELEASE_AFTER_LOCKS || !isTopLevel || !wake_on_commit)
		return;
	wake_on_commit = false;
	if (isCommit && start_on_commit)
		start_projector_on_commit();
	else if (isCommit && cached_projector_pid > 0)
	{
		PGPROC	   *proc = BackendPidGetProc(cached_projector_pid);

		/* a pid reused by some other process is as good as gone */
		if (proc != NULL && proc->isBackgroundWorker && proc->databaseId == MyDatabaseId)
			SetLatch(&proc->procLatch);
		else
		{
			/*
			 * The projector we knew has gone, and this may be the last
			 * append for a while (a pooled session, say): start one now.
			 * Should another have taken over meanwhile, ours gives way.  And
			 * read ledger.projector again next time.
			 */
			if (OidIsValid(start_as) && may_start(GetCurrentTimestamp()))
				start_projector_on_commit();
			cached_projector_pid = -1;
			projector_live = false;
		}
	}
	start_on_commit = false;
}

/*
 * the pid recorded in ledger.projector for this database, 0 if none (*found:
 * whether there is a row; pid 0 in a row: stopped with the library preloaded)
 */
static int
read_projector_pid(bool *found)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	int			pid = 0;

	*found = false;
	projector_relid = get_relname_relid("projector", ledger_catalog()->schema);
	if (!OidIsValid(projector_relid))
		return 0;
	rel = table_open(projector_relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;

		if (DatumGetObjectId(heap_getattr(tup, 1, RelationGetDescr(rel), &isnull)) == MyDatabaseId)
		{
			pid = DatumGetInt32(heap_getattr(tup, 2, RelationGetDescr(rel), &isnull));
			*found = true;
		}
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return pid;
}

/*
 * check_projector -- a projector is wanted in this database: does one run?
 * A live projector holds its lock for life, so if we can take it, none
 * does: release it at once and start one when our transaction commits
 * (after the commit, so that it sees our events, and not at all should we
 * roll back).  Not while the one we started last is still on its way to
 * the lock, and not in a session that cannot write.
 */
static void
check_projector(void)
{
	LOCKTAG		tag;
	LockAcquireResult res;

	if (!IsUnderPostmaster || RecoveryInProgress() || XactReadOnly)
		return;
	projector_locktag(&tag, LEDGER_LOCK_PROJECTOR);
	res = LockAcquire(&tag, ExclusiveLock, true, true);
	if (res != LOCKACQUIRE_NOT_AVAIL)
		LockRelease(&tag, ExclusiveLock, true);
	/* held by a live projector, or already by us: we are the projector */
	if (res != LOCKACQUIRE_OK)
	{
		projector_live = true;
		return;
	}
	if (!may_start(GetCurrentTransactionStartTimestamp()))
		return;
	/* of appenders that find none at once, one starts it (held to our end) */
	projector_locktag(&tag, LEDGER_LOCK_STARTING);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return;
	start_on_commit = true;
}

/*
 * projector_role -- the role a projector connects as: the extension's
 * owner, or the bootstrap superuser if the owner may not log in (a
 * background worker's connection checks rolcanlogin; the preloaded
 * projector connects as the bootstrap superuser too).
 */
static Oid
projector_role(void)
{
	Oid			owner = ledger_extension_owner();
	HeapTuple	tp = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	bool		canlogin = false;

	if (HeapTupleIsValid(tp))
	{
		canlogin = ((Form_pg_authid) GETSTRUCT(tp))->rolcanlogin;
		ReleaseSysCache(tp);
	}
	return canlogin ? owner : BOOTSTRAP_SUPERUSERID;
}

/*
 * ledger_note_async_work -- this transaction appended events that some
 * projection will pick up after commit: wake the projector then, and make
 * sure there is one if ledger.projector says it is wanted.  On the append
 * path: once a live projector is known, this costs two tests.
 */
void
ledger_note_async_work(void)
{
	if (cached_projector_pid < 0)
	{
		bool		found;

		cached_projector_pid = read_projector_pid(&found);
		projector_live = false;
		/* preloaded, a database without a row wants one too */
		projector_wanted = found ? cached_projector_pid > 0 : ledger_preloaded;
		if (projector_wanted)
			start_as = projector_role();
	}
	/* once per transaction: wake_on_commit is still false at its first call */
	if (!wake_on_commit && !projector_live && projector_wanted)
		check_projector();
	wake_on_commit = true;
}

void
ledger_worker_init(void)
{
	DefineCustomIntVariable("ledger_cqrs.projector_naptime",
							"Longest sleep of the projector between checks for new events, in milliseconds.",
							"Appending transactions wake it at commit; this bounds the wait otherwise.",
							&ledger_projector_naptime, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("ledger_cqrs.database",
							   "Database in which the projector started by shared_preload_libraries runs.",
							   NULL, &ledger_projector_database, "postgres",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);

	RegisterResourceReleaseCallback(worker_release_callback, NULL);
	CacheRegisterRelcacheCallback(projector_inval_callback, (Datum) 0);

	ledger_preloaded = process_shared_preload_libraries_in_progress;
	if (ledger_preloaded)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 10;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "ledger_cqrs");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "ledger_projector_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, PROJECTOR_TYPE);
		snprintf(worker.bgw_type, BGW_MAXLEN, PROJECTOR_TYPE);
		worker.bgw_main_arg = ObjectIdGetDatum(InvalidOid);
		RegisterBackgroundWorker(&worker);
	}
}

/* worker_xact_begin, worker_xact_end -- one transaction of the worker, with SPI */
static void
worker_xact_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
worker_xact_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* one iteration: catch up everything; returns events applied */
static int64
projector_round(void)
{
	int64		applied = 0;
	bool		isnull;

	worker_xact_begin();
	pgstat_report_activity(STATE_RUNNING, "ledger_cqrs projector: catch_up");

	if (OidIsValid(get_extension_oid("ledger_cqrs", true)))
	{
		/*
		 * The exact argument types: an int4 literal would let a
		 * ledger.catch_up(text, integer) of anyone's, who may create in
		 * the schema, win the call and run as the extension's owner.
		 */
		char	   *sql = psprintf("SELECT ledger.catch_up(NULL::pg_catalog.text, %d::pg_catalog.int8)",
								   ledger_fill_batch_size);

		if (SPI_execute(sql, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ledger.catch_up failed");
		applied = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}

	worker_xact_end();
	/* what it wrote counts for autovacuum now, not when it exits */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return applied;
}

/*
 * register_self -- make sure ledger.projector records our pid, so appenders
 * can wake us; false if the extension does not exist (yet).
 */
static bool
register_self(void)
{
	bool		done = false;

	worker_xact_begin();
	if (OidIsValid(get_extension_oid("ledger_cqrs", true)))
	{
		/* already there (the usual case, checked every round)? */
		if (SPI_execute(psprintf("SELECT 1 FROM ledger.projector WHERE database OPERATOR(pg_catalog.=) %u::pg_catalog.oid"
								 " AND pid OPERATOR(pg_catalog.=) %d",
								 MyDatabaseId, MyProcPid), true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ledger.projector");
		if (SPI_processed == 0)
		{
			char	   *sql = psprintf("DELETE FROM ledger.projector WHERE database OPERATOR(pg_catalog.=) %u::pg_catalog.oid;"
									   " INSERT INTO ledger.projector VALUES (%u, %d, pg_catalog.now())",
									   MyDatabaseId, MyDatabaseId, MyProcPid);

			if (SPI_execute(sql, false, 0) < 0)
				elog(ERROR, "could not record the projector");
			CacheInvalidateRelcacheByRelid(get_relname_relid("projector", get_namespace_oid("ledger", false)));
		}
		done = true;
	}
	worker_xact_end();
	return done;
}

/*
 * still_wanted -- for a projector an appender started: is this database's
 * row in ledger.projector still there (or, preloaded, is there no row with
 * pid 0)?  The appender decided on what it saw; a stop_projector() that ran
 * meanwhile holds the stopping lock until it commits, so wait for that, then
 * look (a new snapshot: READ COMMITTED).
 */
static bool
still_wanted(void)
{
	bool		wanted = false;
	LOCKTAG		tag;

	worker_xact_begin();
	if (OidIsValid(get_extension_oid("ledger_cqrs", true)))
	{
		projector_locktag(&tag, LEDGER_LOCK_STOPPING);
		(void) LockAcquire(&tag, ShareLock, false, false);
		if (SPI_execute(psprintf("SELECT pid OPERATOR(pg_catalog.<>) 0 FROM ledger.projector"
								 " WHERE database OPERATOR(pg_catalog.=) %u::pg_catalog.oid",
								 MyDatabaseId), false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read ledger.projector");
		if (SPI_processed > 0)
		{
			bool		isnull;

			wanted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		else
			wanted = ledger_preloaded;
	}
	worker_xact_end();
	return wanted;
}

/*
 * take_projector_lock -- the lock that makes us this database's projector.
 * An appender looking for a live projector (check_projector) holds it for
 * an instant, so try a few times, 10 ms apart, before giving way.
 */
static bool
take_projector_lock(void)
{
	LOCKTAG		tag;
	int			i;

	projector_locktag(&tag, LEDGER_LOCK_PROJECTOR);
	for (i = 0; i < 10; i++)
	{
		if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return false;
}

/*
 * database_going -- is a command waiting for this database's connections to
 * end?  DROP DATABASE, an ALTER DATABASE that renames or moves it, and a
 * CREATE DATABASE that copies it lock the database against new connections
 * (RowExclusiveLock, which a backend takes to connect) while they wait, for
 * up to 5 s.  Needs no transaction.
 */
static bool
database_going(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, true);
	return false;
}

/*
 * nap -- sleep until woken or for a naptime, looking at least once a second
 * whether the database is going (database_going): then give way, in time
 * for the command to find no connection left.
 */
static void
nap(Oid dboid)
{
	int			slept;

	for (slept = 0; slept < ledger_projector_naptime; slept += 1000)
	{
		int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   Min(1000, ledger_projector_naptime - slept),
								   PG_WAIT_EXTENSION);

		ResetLatch(MyLatch);
		if (rc & WL_LATCH_SET)
			return;
		CHECK_FOR_INTERRUPTS();
		if (database_going())
		{
			ereport(LOG,
					(errmsg("ledger_cqrs projector: a command waits for the connections to database %u to end; exiting",
							MyDatabaseId)));
			/* the preloaded one is restarted, as when it gives way below */
			proc_exit(OidIsValid(dboid) ? 0 : 1);
		}
	}
}

/*
 * ledger_projector_main -- the worker's entry point.  main_arg is the
 * database OID (InvalidOid: ledger_cqrs.database); bgw_extra holds a
 * ProjectorExtra (zeros for the preloaded one).
 */
void
ledger_projector_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	ProjectorExtra extra;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	if (OidIsValid(dboid))
		BackgroundWorkerInitializeConnectionByOid(dboid, extra.role, 0);
	else
		BackgroundWorkerInitializeConnection(ledger_projector_database, NULL, 0);

	/*
	 * It runs as the extension's owner: nothing it runs may resolve names
	 * through a search_path that others can write to.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	/* and catch-up hands projections over to inline only in READ COMMITTED */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);

	if (extra.on_demand && !still_wanted())
	{
		ereport(LOG,
				(errmsg("ledger_cqrs projector: ledger.stop_projector() was called in this database; exiting")));
		proc_exit(0);
	}

	/* one projector per database: the lock is ours until we exit */
	if (!take_projector_lock())
	{
		/*
		 * A started one gives way for good.  The preloaded one exits with 1,
		 * to be restarted after bgw_restart_time and try again: it takes
		 * over should the other one end (exit 0 would unregister it until
		 * the server restarts).
		 */
		ereport(LOG,
				(errmsg("ledger_cqrs projector: another projector runs in this database; exiting")));
		proc_exit(OidIsValid(dboid) ? 0 : 1);
	}

	for (;;)
	{
		MemoryContext cxt = CurrentMemoryContext;
		int64		applied = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		PG_TRY();
		{
			/*
			 * Make sure appenders can find us: before CREATE EXTENSION, and
			 * after a DROP and CREATE, there is no row for us yet.
			 */
			(void) register_self();
			applied = projector_round();
		}
		PG_CATCH();
		{
			/* log it, roll back, and try again after a nap */
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			applied = 0;
		}
		PG_END_TRY();

		if (applied > 0)
			continue;
		nap(dboid);
	}
}

/* the pid of this database's projector (the holder of its lock), or 0 */
static int
projector_lock_holder(void)
{
	int			pid = 0;
	bool		isnull;

	SPI_connect();
	if (SPI_execute(psprintf("SELECT pid FROM pg_catalog.pg_locks WHERE locktype OPERATOR(pg_catalog.=) 'advisory'"
							 " AND database OPERATOR(pg_catalog.=) %u AND classid OPERATOR(pg_catalog.=) 0"
							 " AND objid OPERATOR(pg_catalog.=) 0 AND objsubid OPERATOR(pg_catalog.=) %d"
							 " AND granted",
							 MyDatabaseId, LEDGER_LOCK_PROJECTOR), true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_locks");
	if (SPI_processed > 0)
		pid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return pid;
}

/* pids of the projectors running in this database */
static List *
running_projectors(void)
{
	List	   *pids = NIL;
	uint64		i;
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	if (SPI_execute(psprintf("SELECT pid FROM pg_catalog.pg_stat_activity"
							 " WHERE backend_type OPERATOR(pg_catalog.=) '%s' AND datid OPERATOR(pg_catalog.=) %u",
							 PROJECTOR_TYPE, MyDatabaseId), true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_stat_activity");
	for (i = 0; i < SPI_processed; i++)
	{
		/* the list outlives SPI_finish */
		MemoryContext spi = MemoryContextSwitchTo(caller);

		pids = lappend_int(pids, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 1, &isnull)));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return pids;
}

/*
 * register_projector -- register a dynamic projector for this database,
 * connecting as role; false (with a WARNING) if no worker slot is free.
 */
static bool
register_projector(Oid role, bool on_demand, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;
	ProjectorExtra extra;

	memset(&worker, 0, sizeof(worker));
	memset(&extra, 0, sizeof(extra));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "ledger_cqrs");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "ledger_projector_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, PROJECTOR_TYPE " for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, PROJECTOR_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	extra.role = role;
	extra.on_demand = on_demand;
	memcpy(worker.bgw_extra, &extra, sizeof(extra));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, handle))
	{
		/* an appender's start is its own business: the server log's */
		ereport(on_demand ? LOG_SERVER_ONLY : WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the ledger_cqrs projector"),
				 errhint("Raise max_worker_processes, or drive projections with ledger.catch_up() or CALL ledger.wait_for_projection().")));
		return false;
	}
	return true;
}

/*
 * start_and_wait -- the projector's pid in this database, starting one if
 * none runs; 0 (with a WARNING) if it cannot start.
 */
static int
start_and_wait(void)
{
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	int			holder;
	int			i;

	holder = projector_lock_holder();
	if (holder != 0)
		return holder;

	if (!register_projector(projector_role(), false, &handle))
		return 0;
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		ereport(WARNING,
				(errmsg("the ledger_cqrs projector did not start")));
		return 0;
	}

	/*
	 * Until it holds the projector lock, it is not the projector: it may yet
	 * find another worker holding it (one started by a concurrent call, or
	 * by shared_preload_libraries) and exit.  Wait for either.
	 */
	for (i = 0; i < 1000; i++)
	{
		pid_t		p;

		if ((holder = projector_lock_holder()) != 0)
			return holder;
		if (GetBackgroundWorkerPid(handle, &p) != BGWH_STARTED)
		{
			/* ours lost the race: the winner must hold the lock by now */
			if ((holder = projector_lock_holder()) != 0)
				return holder;
			ereport(WARNING,
					(errmsg("the ledger_cqrs projector exited before it took over"),
					 errhint("The server log says why.")));
			return 0;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ereport(WARNING,
			(errmsg("the ledger_cqrs projector did not take over within 10 s")));
	return 0;
}

/*
 * ledger_ensure_projector -- start_and_wait, and remember the projector
 * found: this transaction's commit wakes it and starts no other.
 */
int
ledger_ensure_projector(void)
{
	int			pid = start_and_wait();

	if (pid > 0)
	{
		cached_projector_pid = pid;
		projector_wanted = true;
		start_as = projector_role();
		projector_live = true;
		start_on_commit = false;
	}
	return pid;
}

/*
 * ledger.start_projector() -> integer: the projector's pid
 */
Datum
ledger_start_projector(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(ledger_ensure_projector());
}

/*
 * ledger.stop_projector() -> boolean: whether one was running
 */
Datum
ledger_stop_projector(PG_FUNCTION_ARGS)
{
	List	   *pids;
	ListCell   *lc;
	LOCKTAG		tag;

	/*
	 * Until we commit, a projector that an appender starts (having found
	 * none once we ended ours) waits, and then finds no row: still_wanted.
	 */
	projector_locktag(&tag, LEDGER_LOCK_STOPPING);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	pids = running_projectors();

	/* waits (up to 5 s each) until they are gone, lock and all, so that a
	 * start_projector() right after this starts a new one */
	foreach(lc, pids)
		(void) DirectFunctionCall2(pg_terminate_backend, Int32GetDatum(lfirst_int(lc)),
								   Int64GetDatum(5000));
	/*
	 * Appenders stop waking a pid that is gone.  Preloaded, a database with
	 * no row wants a projector, so a row with pid 0 says it was stopped.
	 */
	SPI_connect();
	if (SPI_execute(psprintf("DELETE FROM ledger.projector WHERE database OPERATOR(pg_catalog.=) %u",
							 MyDatabaseId), false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not update ledger.projector");
	if (ledger_preloaded &&
		SPI_execute(psprintf("INSERT INTO ledger.projector VALUES (%u, 0, pg_catalog.now())",
							 MyDatabaseId), false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update ledger.projector");
	SPI_finish();
	CacheInvalidateRelcacheByRelid(get_relname_relid("projector", ledger_catalog()->schema));
	PG_RETURN_BOOL(pids != NIL);
}
