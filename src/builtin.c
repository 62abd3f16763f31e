/*-------------------------------------------------------------------------
 *
 * builtin.c
 *	  The built-in read models as projections: the guard that keeps every
 *	  role from writing them, and their verify and rebuild paths.
 *
 * The commands maintain the read models incrementally (posting.c, ledger.c).
 * Here each model is also defined as a plain recomputation from the log, in
 * SQL, which is what verify compares against and what rebuild writes.  Both
 * are off the hot path, so SPI is fine.
 *
 * A rebuild takes SHARE ROW EXCLUSIVE on ledger.events, which waits for
 * in-flight appends and holds new ones (and any other rebuild of a built-in
 * model) until it commits, then replaces the rows in one transaction:
 * readers see the old complete table until the new one commits (MVCC), and
 * commands never see a half-built model.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/inval.h"
#include "replication/logicalworker.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "ledger_cqrs.h"
#include "builtin.h"
#include "projection.h"

PG_FUNCTION_INFO_V1(ledger_read_model_guard);

/* 0 at the scale of the group's amounts (all legs of a currency share it) */
#define ZERO "(0 OPERATOR(pg_catalog.*) pg_catalog.max(amount))"

/* The legs of every posting, one row per leg. */
#define LEGS_SQL \
	"SELECT l->>'account' AS account, l->>'currency' AS currency," \
	" l->>'side' AS side, (l->>'amount')::pg_catalog.numeric AS amount," \
	" e.position, e.data->>'transfer_id' AS transfer_id, e.recorded_at," \
	" (n OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 AS leg" \
	" FROM ONLY ledger.events e," \
	" pg_catalog.jsonb_array_elements(e.data->'legs') WITH ORDINALITY AS x(l, n)" \
	" WHERE e.type OPERATOR(pg_catalog.=) 'TransferPosted'"

typedef struct BuiltinModel
{
	const char *name;			/* as registered in ledger.projections */
	const char *table;			/* NULL for a view */
	const char *columns;
	const char *keys;			/* to name differing rows */
	const char *recompute;		/* SELECT columns, from the log */
} BuiltinModel;

static const BuiltinModel models[] = {
	{
		"ledger.currencies", "ledger.currencies",
		"code, scale, registered_at, position", "code",
		"SELECT data->>'code', (data->>'scale')::pg_catalog.int4, recorded_at, position"
		" FROM ONLY ledger.events WHERE type OPERATOR(pg_catalog.=) 'CurrencyRegistered'"
	},
	{
		"ledger.accounts", "ledger.accounts",
		"account, flags, status, opened_at, closed_at, metadata", "account",
		"SELECT o.data->>'account',"
		" ARRAY(SELECT pg_catalog.jsonb_array_elements_text(o.data->'flags')),"
		" CASE WHEN c.position IS NULL THEN 'open' ELSE 'closed' END,"
		" o.recorded_at, c.recorded_at, o.data->'metadata'"
		" FROM ONLY ledger.events o LEFT JOIN ONLY ledger.events c"
		" ON c.type OPERATOR(pg_catalog.=) 'AccountClosed'"
		" AND (c.data->>'account') OPERATOR(pg_catalog.=) (o.data->>'account')"
		" WHERE o.type OPERATOR(pg_catalog.=) 'AccountOpened'"
	},
	{
		"ledger.balances", "ledger.balances",
		"account, currency, debits_posted, credits_posted, balance, postings, last_position",
		"account, currency",
		"SELECT account, currency, d, c, c OPERATOR(pg_catalog.-) d, n, p FROM ("
		" SELECT account, currency,"
		" COALESCE(pg_catalog.sum(amount) FILTER (WHERE side OPERATOR(pg_catalog.=) 'debit'), " ZERO ") AS d,"
		" COALESCE(pg_catalog.sum(amount) FILTER (WHERE side OPERATOR(pg_catalog.=) 'credit'), " ZERO ") AS c,"
		" pg_catalog.count(*) AS n, pg_catalog.max(position) AS p"
		" FROM (" LEGS_SQL ") legs GROUP BY account, currency) s"
	},
	{
		"ledger.account_entries", "ledger.account_entries",
		"account, currency, position, transfer_id, side, amount, balance_after, recorded_at, leg",
		"account, currency, position, leg",
		/* RANGE: every leg of a posting on one balance gets the balance after it */
		"SELECT account, currency, position, transfer_id, side, amount,"
		" pg_catalog.sum(CASE side WHEN 'credit' THEN amount ELSE OPERATOR(pg_catalog.-) amount END)"
		" OVER (PARTITION BY account, currency ORDER BY position), recorded_at, leg"
		" FROM (" LEGS_SQL ") legs"
	},
	{
		"ledger.currency_totals", NULL,
		"currency, debits, credits", "currency",
		"SELECT currency,"
		" COALESCE(pg_catalog.sum(amount) FILTER (WHERE side OPERATOR(pg_catalog.=) 'debit'), " ZERO "),"
		" COALESCE(pg_catalog.sum(amount) FILTER (WHERE side OPERATOR(pg_catalog.=) 'credit'), " ZERO ")"
		" FROM (" LEGS_SQL ") legs GROUP BY currency"
	},
};

/*
 * ledger_read_model_guard -- statement trigger on every read model and
 * projection table: only the extension's own maintenance may write, and
 * pg_restore may load rows with ledger_cqrs.restoring = on.
 */
Datum
ledger_read_model_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ledger_read_model_guard: not called by trigger manager");
	if (ledger_maintenance_depth > 0)
		return PointerGetDatum(NULL);
	/* pg_restore loading a dump (superuser, ledger_cqrs.restoring = on) */
	if (ledger_restoring && TRIGGER_FIRED_BY_INSERT(td->tg_event))
		return PointerGetDatum(NULL);
	/* a logical replication subscriber applying the publisher's changes */
	if (IsLogicalWorker())
		return PointerGetDatum(NULL);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s.%s is a read model maintained by ledger_cqrs; it cannot be changed directly",
					get_namespace_name(RelationGetNamespace(td->tg_relation)),
					RelationGetRelationName(td->tg_relation)),
			 errhint("Change the ledger with its commands; repair a read model with ledger.rebuild_projection().")));
	return PointerGetDatum(NULL);
}

/*
 * ledger_builtin_lookup -- the built-in model called name ("ledger.balances"
 * or "balances", read as an SQL name), or NULL.
 */
const BuiltinModel *
ledger_builtin_lookup(const char *name)
{
	char	   *schema;
	char	   *table;
	size_t		i;

	if (!ledger_split_projection_name(name, &schema, &table) ||
		(schema != NULL && strcmp(schema, "ledger") != 0))
		return NULL;
	for (i = 0; i < lengthof(models); i++)
		if (strcmp(models[i].name + strlen("ledger."), table) == 0)
			return &models[i];
	return NULL;
}

const char *
ledger_builtin_name(const BuiltinModel *m)
{
	return m->name;
}

/* the recomputation, with the model's column names */
static char *
recompute_sql(const BuiltinModel *m)
{
	return psprintf("SELECT * FROM (%s) r(%s)", m->recompute, m->columns);
}

static int64
spi_int8(const char *sql)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "query failed: %s", sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * ledger_compare_with_log -- compare the rows of live with the recomputation
 * (a query whose columns are cols), EXCEPT ALL both ways.  When they differ,
 * a NOTICE names the first differing keys and the result is false.  Caller
 * is connected to SPI.
 */
bool
ledger_compare_with_log(const char *name, const char *recompute, const char *cols,
						const char *keys, const char *live)
{
	char	   *diff;
	StringInfoData buf;
	uint64		i;

	diff = psprintf("SELECT * FROM ("
					"SELECT 'missing' AS problem, %s FROM ((%s) EXCEPT ALL SELECT %s FROM %s) a"
					" UNION ALL "
					"SELECT 'unexpected', %s FROM (SELECT %s FROM %s EXCEPT ALL (%s)) b"
					") d ORDER BY problem, %s LIMIT 5",
					keys, recompute, cols, live,
					keys, cols, live, recompute, keys);
	/* read-only: with the calling statement's snapshot */
	if (SPI_execute(diff, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "verify query failed");
	if (SPI_processed == 0)
		return true;

	initStringInfo(&buf);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		int			col;

		appendStringInfo(&buf, "%s%s (", i > 0 ? "; " : "",
						 SPI_getvalue(t, SPI_tuptable->tupdesc, 1));
		for (col = 2; col <= SPI_tuptable->tupdesc->natts; col++)
		{
			char	   *v = SPI_getvalue(t, SPI_tuptable->tupdesc, col);

			appendStringInfo(&buf, "%s%s=%s", col > 2 ? ", " : "",
							 SPI_fname(SPI_tuptable->tupdesc, col), v ? v : "NULL");
		}
		appendStringInfoChar(&buf, ')');
	}
	ereport(NOTICE,
			(errmsg("projection %s differs from the log", name),
			 errdetail("First differing rows (missing = in the log but not in the table): %s.",
					   buf.data)));
	return false;
}

/*
 * ledger_builtin_verify -- compare a built-in model with its recomputation
 * from the log.
 */
bool
ledger_builtin_verify(const BuiltinModel *m)
{
	bool		ok;

	SPI_connect();
	ok = ledger_compare_with_log(m->name, recompute_sql(m), m->columns, m->keys,
								 m->table ? m->table : m->name);
	SPI_finish();
	return ok;
}

/*
 * ledger_builtin_rebuild -- recompute a built-in model from the log.
 * Returns the number of events in the log it was rebuilt from.
 */
int64
ledger_builtin_rebuild(const BuiltinModel *m)
{
	int64		nevents;

	/*
	 * It reads the log to its head under the lock below: a transaction
	 * snapshot taken before the lock was granted would not see the rows it
	 * must replace, and every concurrent posting would make it fail (40001).
	 */
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rebuild_projection of a built-in read model cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errhint("Run it in a READ COMMITTED transaction.")));
	SPI_connect();
	/* SHARE ROW EXCLUSIVE: holds appends, and a second rebuild, until commit */
	ledger_lock_events(ShareRowExclusiveLock);
	nevents = spi_int8("SELECT pg_catalog.count(*) FROM ONLY ledger.events");
	if (m->table != NULL)
	{
		ledger_maintenance_depth++;
		PG_TRY();
		{
			if (SPI_execute(psprintf("DELETE FROM %s", m->table), false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not clear %s", m->table);
			if (SPI_execute(psprintf("INSERT INTO %s (%s) %s", m->table, m->columns, recompute_sql(m)),
							false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not refill %s", m->table);
			/* backends cache which balance rows exist: make them forget */
			if (strcmp(m->table, "ledger.balances") == 0)
				CacheInvalidateRelcacheByRelid(ledger_catalog()->balances);
		}
		PG_FINALLY();
		{
			ledger_maintenance_depth--;
		}
		PG_END_TRY();
	}
	SPI_finish();
	return nevents;
}
