/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Incremental maintenance of user projections: the registry as each
 *	  backend caches it, the inline fold run by every append, and the range
 *	  fold used by catch-up, fills and rebuilds.
 *
 * The cache of ledger.projections is read with the latest snapshot, not the
 * transaction's, and is forgotten on relcache invalidation of the registry.
 * Every change that matters to appenders (create, drop, a hand-over to
 * inline) sends that invalidation and commits under a SHARE lock on
 * ledger.events; appenders take ROW EXCLUSIVE there before they read the
 * cache, which processes pending invalidations.  So an appender always
 * sees the registry as of the last such change, whatever its isolation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "projection.h"

/* Columns of ledger.projections we read. */
#define Anum_proj_name			1
#define Anum_proj_kind			2
#define Anum_proj_mode			3
#define Anum_proj_state			4
#define Anum_proj_definition	5
#define Anum_proj_schema		7
#define Anum_proj_table			8

static List *projections = NIL;
static bool projections_valid = false;
static MemoryContext projections_cxt = NULL;
static Oid	registry_relid = InvalidOid;
static uint64 registry_invals = 0;

/*
 * Walks of the list under way that run user code (a fold, the triggers it
 * fires): an append nested in that code gets the list as it is, however
 * stale, and the walk's entries and plans stay put.  Reset at transaction
 * end; a walk restores the count it found, which also undoes what an
 * error inside it left.
 */
static int	projection_pins = 0;

/*
 * The registry changed, or one of the projections' tables did (dropped or
 * renamed behind the projection's back, say): read it all again.
 */
static void
registry_inval_callback(Datum arg, Oid relid)
{
	ListCell   *lc;
	bool		ours = (relid == InvalidOid || relid == registry_relid);

	/*
	 * A projection whose table was missing (renamed away) has no relid to
	 * match: any relation's change may be its table coming back.
	 */
	foreach(lc, projections)
		ours = ours || ((Projection *) lfirst(lc))->relid == relid ||
			!OidIsValid(((Projection *) lfirst(lc))->relid);
	if (ours)
	{
		projections_valid = false;
		registry_invals++;
	}
}

/*
 * A function changed (replaced, dropped, re-created): a parsed definition
 * that calls user-defined functions may now resolve to others, or reach
 * others through their bodies, and its list of them (which stamps
 * snapshots) must be made again.  Read it all again.
 */
static void
function_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	ListCell   *lc;

	foreach(lc, projections)
	{
		Projection *p = lfirst(lc);

		if (p->def != NULL && p->def->funcs != NIL)
		{
			projections_valid = false;
			registry_invals++;
			return;
		}
	}
}

static void
apply_xact_callback(XactEvent event, void *arg)
{
	projection_pins = 0;
}

void
ledger_apply_init(void)
{
	CacheRegisterRelcacheCallback(registry_inval_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, function_inval_callback, (Datum) 0);
	RegisterXactCallback(apply_xact_callback, NULL);
}

/*
 * ledger_pin_projections -- begin a walk of the cached list (see
 * projection_pins); returns what to pass to ledger_unpin_projections.
 */
int
ledger_pin_projections(void)
{
	return projection_pins++;
}

void
ledger_unpin_projections(int pins)
{
	projection_pins = pins;
}

/*
 * ledger_projections_changed -- tell every backend (at its next lock on
 * ledger.events) to reload the registry.  Takes effect at commit.
 */
void
ledger_projections_changed(void)
{
	CacheInvalidateRelcacheByRelid(ledger_catalog()->projections);
}

static char *
text_attr(HeapTuple tup, TupleDesc desc, int attno)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attno, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * ledger_user_projections -- the registered user projections, cached.
 */
List *
ledger_user_projections(void)
{
	const LedgerCatalog *c;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	MemoryContext old;
	int			nest;
	uint64		invals;

	if (projections_valid || projection_pins > 0)
		return projections;

	c = ledger_catalog();
	if (projections_cxt == NULL)
		projections_cxt = AllocSetContextCreate(CacheMemoryContext,
												"ledger_cqrs projections",
												ALLOCSET_DEFAULT_SIZES);
	else
	{
		ListCell   *lc;

		foreach(lc, projections)
		{
			Projection *p = lfirst(lc);

			if (p->inline_plan)
				SPI_freeplan(p->inline_plan);
		}
		MemoryContextReset(projections_cxt);
	}
	projections = NIL;
	registry_relid = c->projections;
	/* an invalidation while we read, or an error, makes us read again */
	invals = registry_invals;

	nest = ledger_push_fixed_search_path();
	rel = table_open(c->projections, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		char	   *kind = text_attr(tup, desc, Anum_proj_kind);
		char	   *mode;
		char	   *state;
		Projection *p;

		if (strcmp(kind, "user") != 0)
			continue;
		mode = text_attr(tup, desc, Anum_proj_mode);
		state = text_attr(tup, desc, Anum_proj_state);

		old = MemoryContextSwitchTo(projections_cxt);
		p = palloc0(sizeof(Projection));
		p->name = text_attr(tup, desc, Anum_proj_name);
		p->async = (strcmp(mode, "async") == 0);
		p->state = state[0];
		p->target = quote_qualified_identifier(text_attr(tup, desc, Anum_proj_schema),
											   text_attr(tup, desc, Anum_proj_table));
		p->owner = ledger_table_owner(text_attr(tup, desc, Anum_proj_schema),
									  text_attr(tup, desc, Anum_proj_table), &p->relid);
		/* parsed when used: one broken definition must not stop every append */
		p->definition = text_attr(tup, desc, Anum_proj_definition);
		projections = lappend(projections, p);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	AtEOXact_GUC(true, nest);
	projections_valid = (registry_invals == invals);
	return projections;
}

/*
 * ledger_projection_def -- p's parsed definition.  Parsing resolves the
 * query's names, and a definition can stop resolving (a function it calls
 * dropped), so it is parsed only by what folds into that projection: an
 * async projection that no longer parses fails at its catch-up, and the
 * appends that do not feed it go on.
 */
ProjectionDef *
ledger_projection_def(Projection *p)
{
	if (p->def == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(projections_cxt);
		int			nest = ledger_push_fixed_search_path();

		p->def = ledger_parse_projection(p->definition);
		AtEOXact_GUC(true, nest);
		MemoryContextSwitchTo(old);
	}
	return p->def;
}

/*
 * ledger_apply_inline -- fold the events at positions (just appended by
 * this transaction, visible to it) into every live inline projection.  An
 * error names the projection and fails the append.
 */
void
ledger_apply_inline(int64 *positions, int n)
{
	List	   *projs = ledger_user_projections();
	ListCell   *lc;
	bool		any_inline = false;
	Datum		arg;
	int			nest;
	LedgerUserSwitch save;
	MemoryContext cxt = CurrentMemoryContext;
	int			pins;

	foreach(lc, projs)
	{
		Projection *p = lfirst(lc);

		if (p->async || p->state != 'l')
			ledger_note_async_work();
		else
			any_inline = true;
	}
	if (!any_inline)
		return;

	{
		Datum	   *elems = palloc(sizeof(Datum) * n);
		int			i;

		for (i = 0; i < n; i++)
			elems[i] = Int64GetDatum(positions[i]);
		arg = PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}

	SPI_connect();
	nest = ledger_push_fixed_search_path();
	pins = ledger_pin_projections();
	/* the count goes back however the walk ends, a caught error included */
	PG_TRY();
	{
		foreach(lc, projs)
		{
			Projection *p = lfirst(lc);
			Oid			argtype = INT8ARRAYOID;

			if (p->async || p->state != 'l')
				continue;
			ledger_check_owner(p->owner, p->name, p->target);

			/*
			 * Prepared anew when stale, unless an outer walk may be running
			 * this very plan: then it is executed as is, and revalidated.
			 */
			if (p->inline_plan == NULL ||
				(pins == 0 && !SPI_plan_is_valid(p->inline_plan)))
			{
				char	   *sql = ledger_projection_fold_sql(ledger_projection_def(p), p->target,
															 PROJ_COND_POSITIONS);

				/*
				 * A generic plan: the batch is always a handful of positions,
				 * and a custom plan per append would re-plan every time.
				 */
				SPIPlanPtr	plan = SPI_prepare_cursor(sql, 1, &argtype, CURSOR_OPT_GENERIC_PLAN);

				if (plan == NULL)
					elog(ERROR, "could not prepare the fold of projection \"%s\": %s",
						 p->name, SPI_result_code_string(SPI_result));
				if (p->inline_plan)
					SPI_freeplan(p->inline_plan);
				SPI_keepplan(plan);
				p->inline_plan = plan;
			}

			ledger_maintenance_depth++;
			ledger_become(p->owner, true, &save);
			PG_TRY();
			{
				int			rc = SPI_execute_plan(p->inline_plan, &arg, NULL, false, 0);

				if (rc != SPI_OK_INSERT)
					elog(ERROR, "fold of projection \"%s\" failed: %s", p->name,
						 SPI_result_code_string(rc));
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				ledger_maintenance_depth--;
				ledger_restore_user(&save);
				MemoryContextSwitchTo(cxt);
				edata = CopyErrorData();
				FlushErrorState();
				/* a cancel, a deadlock ...: not the events' fault */
				if (ledger_error_is_transient(edata->sqlerrcode))
					ReThrowError(edata);
				ereport(ERROR,
						(errcode(edata->sqlerrcode),
						 errmsg("projection \"%s\" failed on the appended events: %s",
								p->name, edata->message),
						 edata->detail ? errdetail("%s", edata->detail) : 0,
						 errhint("Nothing was appended. Fix the events, or drop the projection with ledger.drop_projection('%s').",
								 p->name)));
			}
			PG_END_TRY();
			ledger_restore_user(&save);
			ledger_maintenance_depth--;
		}
	}
	PG_FINALLY();
	{
		ledger_unpin_projections(pins);
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nest);
	SPI_finish();
}

/*
 * ledger_fold_range -- fold into target the events after the cursor
 * (from_order, from_position) and up to (to_order, to_position), or all
 * of them after it if unbounded; of those, only the ones at a position
 * above above_position (0: all).  The caller is connected to SPI.  The
 * query is analyzed and run in the fixed environment of
 * ledger_push_fixed_search_path, whoever calls (catch-up, a fill, a
 * rebuild), so its literals mean what they mean to the inline fold.
 * Returns the number of rows written.
 */
int64
ledger_fold_range(ProjectionDef *def, const char *target, Oid owner,
				  FullTransactionId from_order, int64 from_position,
				  FullTransactionId to_order, int64 to_position,
				  bool unbounded, int64 above_position)
{
	Oid			types[5] = {XID8OID, INT8OID, XID8OID, INT8OID, INT8OID};
	Datum		values[5];
	const char *cond;
	int			nargs = unbounded ? 2 : 4;
	SPIPlanPtr	plan;
	LedgerUserSwitch save;
	volatile int rc = 0;
	int			nest;

	values[0] = FullTransactionIdGetDatum(from_order);
	values[1] = Int64GetDatum(from_position);
	values[2] = FullTransactionIdGetDatum(to_order);
	values[3] = Int64GetDatum(to_position);
	cond = unbounded ? PROJ_COND_AFTER : PROJ_COND_RANGE;
	/* a floor only for a rebuild from a cut; it goes last, after $2 or $4 */
	if (above_position > 0)
	{
		types[nargs] = INT8OID;
		values[nargs] = Int64GetDatum(above_position);
		nargs++;
		cond = psprintf("%s AND position OPERATOR(pg_catalog.>) $%d::pg_catalog.int8", cond, nargs);
	}

	/* prepared, so that it can only ever be one statement */
	nest = ledger_push_fixed_search_path();
	plan = SPI_prepare(ledger_projection_fold_sql(def, target, cond), nargs, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the fold into %s: %s", target,
			 SPI_result_code_string(SPI_result));

	ledger_maintenance_depth++;
	ledger_become(owner, true, &save);
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, NULL, false, 0);
	}
	PG_FINALLY();
	{
		ledger_restore_user(&save);
		ledger_maintenance_depth--;
	}
	PG_END_TRY();
	AtEOXact_GUC(true, nest);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "fold into %s failed: %s", target, SPI_result_code_string(rc));
	SPI_freeplan(plan);
	return (int64) SPI_processed;
}
