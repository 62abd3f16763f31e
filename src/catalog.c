/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The extension's relations as the C code sees them: their OIDs, looked
 *	  up by name once and forgotten on relcache invalidation, and a direct
 *	  heap-plus-indexes insert that the hot paths use instead of the
 *	  executor.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "ledger_cqrs.h"

static LedgerCatalog cat;
static bool cat_valid = false;

/*
 * Per-heap cache of the IndexInfo of every index, so an insert does not
 * rebuild them.  Small and flat: the extension inserts into a handful of
 * tables.
 */
typedef struct IndexCacheEntry
{
	Oid			heap;
	int			nindexes;
	Oid		   *indexes;
	IndexInfo **infos;
	bool		simple;			/* no expressions, predicates or exclusion */
} IndexCacheEntry;

#define INDEX_CACHE_SIZE 32
static IndexCacheEntry index_cache[INDEX_CACHE_SIZE];
static int	index_cache_used = 0;
static MemoryContext index_cache_cxt = NULL;

/*
 * Set by invalidations, acted on by the next lookup: an invalidation can
 * arrive inside index_open, while a caller still uses an entry, so the
 * callback must not free anything.
 */
static bool index_cache_stale = false;

static void
reset_index_cache(void)
{
	index_cache_used = 0;
	if (index_cache_cxt)
		MemoryContextReset(index_cache_cxt);
}

/*
 * catalog_inval_callback -- forget cached OIDs and index descriptions when
 * any relation we depend on changes (DROP EXTENSION, CREATE INDEX, ...).
 */
static void
catalog_inval_callback(Datum arg, Oid relid)
{
	int			i;

	if (relid == InvalidOid || relid == cat.events || relid == cat.events_seq ||
		relid == cat.events_pkey || relid == cat.events_stream_idx ||
		relid == cat.events_order_idx || relid == cat.currencies ||
		relid == cat.currencies_pkey || relid == cat.accounts ||
		relid == cat.accounts_pkey || relid == cat.balances ||
		relid == cat.balances_pkey || relid == cat.account_entries ||
		relid == cat.balance_snapshots ||
		relid == cat.projections)
		cat_valid = false;

	if (relid == InvalidOid)
	{
		index_cache_stale = true;
		return;
	}
	for (i = 0; i < index_cache_used && !index_cache_stale; i++)
	{
		IndexCacheEntry *e = &index_cache[i];
		int			j;
		bool		hit = (e->heap == relid);

		for (j = 0; !hit && j < e->nindexes; j++)
			hit = (e->indexes[j] == relid);
		if (hit)
			index_cache_stale = true;
	}
}

void
ledger_catalog_init(void)
{
	CacheRegisterRelcacheCallback(catalog_inval_callback, (Datum) 0);
}

static Oid
lookup_rel(const char *name, Oid schema)
{
	Oid			relid = get_relname_relid(name, schema);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"ledger.%s\" does not exist", name),
				 errhint("Is the extension ledger_cqrs installed in this database?")));
	return relid;
}

/*
 * ledger_catalog -- the OIDs of the extension's relations in this database.
 */
const LedgerCatalog *
ledger_catalog(void)
{
	if (!cat_valid)
	{
		Oid			schema = get_namespace_oid("ledger", true);

		if (!OidIsValid(schema))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_SCHEMA),
					 errmsg("schema \"ledger\" does not exist"),
					 errhint("Run CREATE EXTENSION ledger_cqrs first.")));
		cat.schema = schema;
		cat.events = lookup_rel("events", schema);
		cat.events_pkey = lookup_rel("events_pkey", schema);
		cat.events_stream_idx = lookup_rel("events_stream_version_key", schema);
		cat.events_order_idx = lookup_rel("events_tx_order_idx", schema);
		cat.events_seq = lookup_rel("events_position_seq", schema);
		cat.currencies = lookup_rel("currencies", schema);
		cat.currencies_pkey = lookup_rel("currencies_pkey", schema);
		cat.accounts = lookup_rel("accounts", schema);
		cat.accounts_pkey = lookup_rel("accounts_pkey", schema);
		cat.balances = lookup_rel("balances", schema);
		cat.balances_pkey = lookup_rel("balances_pkey", schema);
		cat.account_entries = lookup_rel("account_entries", schema);
		cat.balance_snapshots = lookup_rel("balance_snapshots", schema);
		cat.stream_snapshots = lookup_rel("stream_snapshots", schema);
		cat.stream_snapshots_pkey = lookup_rel("stream_snapshots_pkey", schema);
		cat.projections = lookup_rel("projections", schema);
		cat_valid = true;
	}
	return &cat;
}

static void insert_index_entries(Relation rel, HeapTuple tuple);

static IndexCacheEntry *
index_cache_lookup(Relation heap)
{
	Oid			relid = RelationGetRelid(heap);
	IndexCacheEntry *e;
	List	   *indexoids;
	ListCell   *lc;
	MemoryContext old;
	int			i;

	if (index_cache_stale)
	{
		index_cache_stale = false;
		reset_index_cache();
	}
	for (i = 0; i < index_cache_used; i++)
		if (index_cache[i].heap == relid)
			return &index_cache[i];

	if (index_cache_cxt == NULL)
		index_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												"ledger_cqrs index cache",
												ALLOCSET_SMALL_SIZES);
	if (index_cache_used == INDEX_CACHE_SIZE)
		reset_index_cache();

	indexoids = RelationGetIndexList(heap);
	old = MemoryContextSwitchTo(index_cache_cxt);
	e = &index_cache[index_cache_used];
	e->heap = relid;
	e->nindexes = list_length(indexoids);
	e->indexes = palloc(sizeof(Oid) * Max(e->nindexes, 1));
	e->infos = palloc(sizeof(IndexInfo *) * Max(e->nindexes, 1));
	e->simple = true;
	i = 0;
	foreach(lc, indexoids)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		IndexInfo  *ii = BuildIndexInfo(idx);

		if (ii->ii_Expressions != NIL || ii->ii_Predicate != NIL)
			e->simple = false;
		if (ii->ii_ExclusionOps != NULL)
			elog(ERROR, "exclusion constraints on \"%s\" are not supported",
				 RelationGetRelationName(heap));
		e->indexes[i] = lfirst_oid(lc);
		e->infos[i] = ii;
		index_close(idx, AccessShareLock);
		i++;
	}
	MemoryContextSwitchTo(old);
	list_free(indexoids);
	index_cache_used++;
	return e;
}

/*
 * ledger_form_row -- a tuple for rel from values/nulls, natts of them, after
 * checking that rel still has exactly those columns, of types: the callers
 * fill fixed-size arrays, and a column added, dropped or retyped by hand
 * (the DDL guard switched off) must fail the write cleanly, not read past
 * them or store a datum as another type.  Reads by attribute number that
 * come before a write are not covered; the DDL guard keeps the columns.
 */
HeapTuple
ledger_form_row(Relation rel, const Oid *types, int natts, Datum *values, bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < Max(desc->natts, natts); i++)
	{
		Form_pg_attribute att = i < desc->natts ? TupleDescAttr(desc, i) : NULL;

		if (att == NULL || i >= natts || att->attisdropped || att->atttypid != types[i])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("ledger.%s does not have the columns ledger_cqrs writes",
							RelationGetRelationName(rel)),
					 i >= natts ?
					 errdetail("It has a column %d, of type %s; the extension writes %d.",
							   i + 1, format_type_be(att->atttypid), natts) :
					 errdetail("Column %d is %s; expected %s.", i + 1,
							   att == NULL ? "missing" : att->attisdropped ? "dropped" :
							   format_type_be(att->atttypid), format_type_be(types[i])),
					 errhint("The extension's tables must keep the columns its install script made.")));
	}
	return heap_form_tuple(desc, values, nulls);
}

/*
 * ledger_insert_tuple -- insert a heap tuple and its index entries.
 *
 * This is what ExecInsert does minus the executor: no triggers, no
 * constraint checks, no RLS.  Callers validate beforehand; the append-only
 * triggers on ledger.events exist precisely to refuse every other path.
 * Unique indexes are checked immediately, waiting on in-progress inserters
 * as the executor would.  The caller holds RowExclusiveLock on rel.
 */
void
ledger_insert_tuple(Relation rel, HeapTuple tuple)
{
	simple_heap_insert(rel, tuple);
	insert_index_entries(rel, tuple);
}

/*
 * ledger_update_tuple -- replace the row at otid, which the caller has made
 * sure nobody else updates concurrently (it holds the row's advisory lock),
 * and add index entries unless the update was HOT.  Returns true when it
 * added them: the row's index entries now point to tuple->t_self.
 */
bool
ledger_update_tuple(Relation rel, ItemPointer otid, HeapTuple tuple)
{
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;

	simple_heap_update(rel, otid, tuple, &update_indexes);
	if (update_indexes == TU_None)
		return false;
#else
	simple_heap_update(rel, otid, tuple);
	if (HeapTupleIsHeapOnly(tuple))
		return false;
#endif
	insert_index_entries(rel, tuple);
	return true;
}

/*
 * fetch_by_index -- the row whose leading index columns equal keys (all
 * text), as seen by snapshot, through the index.  *root, if not NULL, gets
 * the heap TID the index entry holds: the root of the row's HOT chain,
 * which stays put while the row is updated in place.
 */
static bool
fetch_by_index(Relation rel, Oid indexoid, int nkeys, text **keys,
			   Snapshot snapshot, TupleTableSlot *slot, ItemPointer root)
{
	Relation	idx = index_open(indexoid, AccessShareLock);
	ScanKeyData skeys[INDEX_MAX_KEYS];
	IndexScanDesc scan;
	bool		found = false;
	int			i;

	for (i = 0; i < nkeys; i++)
	{
		/* hints are checked against the table's first columns */
		if (root != NULL && idx->rd_index->indkey.values[i] != i + 1)
			elog(ERROR, "index \"%s\" does not start with the first columns of \"%s\"",
				 RelationGetRelationName(idx), RelationGetRelationName(rel));
		ScanKeyEntryInitialize(&skeys[i], 0, i + 1, BTEqualStrategyNumber,
							   InvalidOid, idx->rd_indcollation[i], F_TEXTEQ,
							   PointerGetDatum(keys[i]));
	}
	scan = index_beginscan(rel, idx, snapshot, nkeys, 0);
	index_rescan(scan, skeys, nkeys, NULL, 0);
	/* index_getnext_slot, keeping the TID from the index */
	for (;;)
	{
		if (!scan->xs_heap_continue)
		{
			ItemPointer tid = index_getnext_tid(scan, ForwardScanDirection);

			if (tid == NULL)
				break;
			if (root != NULL)
				*root = *tid;
		}
		if (index_fetch_heap(scan, slot))
		{
			found = true;
			break;
		}
	}
	index_endscan(scan);
	index_close(idx, AccessShareLock);
	return found;
}

/*
 * ledger_fetch_by_text_key -- fetch the row whose leading index columns
 * equal keys (all text), as seen by snapshot.  Returns false if none.
 */
bool
ledger_fetch_by_text_key(Relation rel, Oid indexoid, int nkeys, text **keys,
						 Snapshot snapshot, TupleTableSlot *slot)
{
	return fetch_by_index(rel, indexoid, nkeys, keys, snapshot, slot, NULL);
}

/*
 * ledger_fetch_hinted -- ledger_fetch_by_text_key for a unique index whose
 * columns are the table's first nkeys columns, trying *hint first: the
 * heap TID the index gave for this key last time.  The hint is only a
 * guess.  It is followed when its block lies below nblocks, which the
 * caller read while holding a lock on rel that keeps it from being
 * truncated, and its answer is taken only when the row it leads to is
 * visible and has the key (the line pointer may since have been freed and
 * reused).  Otherwise the index is searched, and *hint set from it.
 */
bool
ledger_fetch_hinted(Relation rel, Oid indexoid, int nkeys, text **keys,
					Snapshot snapshot, TupleTableSlot *slot,
					ItemPointer hint, BlockNumber nblocks)
{
	bool		found;

	if (ItemPointerIsValid(hint) && ItemPointerGetBlockNumber(hint) < nblocks)
	{
		IndexFetchTableData *fetch = table_index_fetch_begin(rel);
		ItemPointerData tid = *hint;
		bool		call_again = false;
		bool		all_dead = false;

		found = table_index_fetch_tuple(fetch, &tid, snapshot, slot,
										&call_again, &all_dead);
		table_index_fetch_end(fetch);
		if (found)
		{
			int			i;

			for (i = 0; i < nkeys; i++)
			{
				bool		isnull;
				Datum		d = slot_getattr(slot, i + 1, &isnull);
				text	   *t;

				if (isnull)
					break;
				t = DatumGetTextPP(d);
				if (VARSIZE_ANY_EXHDR(t) != VARSIZE_ANY_EXHDR(keys[i]) ||
					memcmp(VARDATA_ANY(t), VARDATA_ANY(keys[i]), VARSIZE_ANY_EXHDR(t)) != 0)
					break;
			}
			if (i == nkeys)
				return true;
		}
	}
	found = fetch_by_index(rel, indexoid, nkeys, keys, snapshot, slot, hint);
	if (!found)
		ItemPointerSetInvalid(hint);
	return found;
}

/*
 * ledger_prefixed_name -- prefix || name, e.g. the stream "account:" || id.
 */
text *
ledger_prefixed_name(const char *prefix, text *name)
{
	int			plen = strlen(prefix);
	int			nlen = VARSIZE_ANY_EXHDR(name);
	text	   *result = palloc(VARHDRSZ + plen + nlen);

	SET_VARSIZE(result, VARHDRSZ + plen + nlen);
	memcpy(VARDATA(result), prefix, plen);
	memcpy(VARDATA(result) + plen, VARDATA_ANY(name), nlen);
	return result;
}

/*
 * insert_index_entries -- index entries for a heap tuple already stored.
 */
static void
insert_index_entries(Relation rel, HeapTuple tuple)
{
	IndexCacheEntry *e = index_cache_lookup(rel);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	EState	   *estate = NULL;
	TupleTableSlot *slot = NULL;
	int			i;

	if (!e->simple)
	{
		estate = CreateExecutorState();
		slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsHeapTuple);
		ExecStoreHeapTuple(tuple, slot, false);
		GetPerTupleExprContext(estate)->ecxt_scantuple = slot;
	}

	for (i = 0; i < e->nindexes; i++)
	{
		IndexInfo  *ii = e->infos[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];
		Relation	idx = index_open(e->indexes[i], RowExclusiveLock);

		if (e->simple)
		{
			int			k;

			for (k = 0; k < ii->ii_NumIndexAttrs; k++)
				values[k] = heap_getattr(tuple, ii->ii_IndexAttrNumbers[k],
										 tupdesc, &isnull[k]);
		}
		else
		{
			/* expression states live in this call's estate only */
			ii->ii_ExpressionsState = NIL;
			ii->ii_PredicateState = NULL;
			if (ii->ii_Predicate != NIL)
			{
				ExprState  *pred = ExecPrepareQual(ii->ii_Predicate, estate);

				if (!ExecQual(pred, GetPerTupleExprContext(estate)))
				{
					index_close(idx, NoLock);
					continue;
				}
			}
			FormIndexDatum(ii, slot, estate, values, isnull);
		}

		index_insert(idx, values, isnull, &tuple->t_self, rel,
					 ii->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, ii);
		index_close(idx, NoLock);
	}

	if (estate)
	{
		ExecDropSingleTupleTableSlot(slot);
		FreeExecutorState(estate);
	}
}

/*
 * ledger_try_in_subxact -- fn(arg) in a subtransaction.  On error the
 * subtransaction is rolled back and the error returned (NULL when fn
 * succeeded); the caller decides what it means.
 */
ErrorData *
ledger_try_in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			depth = ledger_maintenance_depth;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ledger_maintenance_depth = depth;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

typedef struct QueuedLock
{
	Oid			relid;
	LOCKMODE	mode;
	int			timeout_ms;
} QueuedLock;

static void
lock_with_timeout(void *arg)
{
	QueuedLock *q = arg;
	int			nest = NewGUCNestLevel();

	(void) set_config_option("lock_timeout", psprintf("%d", q->timeout_ms),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	LockRelationOid(q->relid, q->mode);
	AtEOXact_GUC(true, nest);
}

/*
 * try_lock_queued -- mode on relid, waiting in the lock queue for at most
 * timeout_ms (lock_timeout, in a subtransaction that a 55P03 rolls back;
 * a granted lock passes to our transaction).  While we wait there,
 * appenders queue behind us: the timeout bounds that.
 */
static bool
try_lock_queued(Oid relid, LOCKMODE mode, int timeout_ms)
{
	QueuedLock	q = {relid, mode, timeout_ms};
	ErrorData  *edata = ledger_try_in_subxact(lock_with_timeout, &q);

	if (edata == NULL)
		return true;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/*
 * ledger_lock_events -- take mode (SHARE, or SHARE ROW EXCLUSIVE), which
 * holds appends still, on ledger.events without letting one long appending
 * transaction stall every other appender.  A plain LOCK TABLE would wait
 * in the queue for that transaction, and every new append would queue
 * behind it.  Instead: the lock if it is free; else wait, outside the
 * queue, for the appenders in flight to end (those that begin meanwhile go
 * on), then queue for at most 20 ms; else pause and start again.  Appends
 * are held up for at most those 20 ms at a time, and for as long as the
 * caller holds the lock.
 */
void
ledger_lock_events(LOCKMODE mode)
{
	Oid			events = ledger_catalog()->events;
	LOCKTAG		tag;

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, events);
	for (int attempt = 1;; attempt++)
	{
		if (ConditionalLockRelationOid(events, mode))
			return;
		/* out of the queue: those in flight end, new ones go on */
		WaitForLockers(tag, mode, false);
		if (try_lock_queued(events, mode, 20))
			return;
		/* a pause out of the queue, longer each time (up to 200 ms) */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(10L * attempt, 200L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
