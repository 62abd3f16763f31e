/*-------------------------------------------------------------------------
 *
 * ledger_cqrs.c
 *	  Module entry point: GUCs, cache and transaction callbacks, and (with
 *	  shared_preload_libraries) the projector worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/guc.h"

#include "ledger_cqrs.h"
#include "ledger.h"
#include "projection.h"

PG_MODULE_MAGIC;

bool		ledger_restoring = false;
int			ledger_maintenance_depth = 0;

void		_PG_init(void);

/* the read-model guards' "maintaining" flag never outlives an error */
static void
reset_maintenance(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		ledger_maintenance_depth = 0;
}

void
_PG_init(void)
{
	DefineCustomBoolVariable("ledger_cqrs.restoring",
							 "Lets a superuser load ledger.events rows with COPY or INSERT, as pg_restore does.",
							 "UPDATE, DELETE and TRUNCATE stay refused. Restored rows get a fresh tx_order.",
							 &ledger_restoring,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("ledger_cqrs.snapshot_interval",
							"Postings per account and currency between balance snapshots (0 = off).",
							"balance_at folds at most this many postings after the nearest snapshot.",
							&ledger_snapshot_interval, 1000, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ledger_cqrs.projection_snapshot_interval",
							"Events between automatic snapshots of a projection (0 = off).",
							"Rebuilds start from the newest snapshot whose definition hash matches.",
							&ledger_projection_snapshot_interval, 100000, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ledger_cqrs.fill_batch_size",
							"Events folded per transaction when a projection is filled or caught up.",
							NULL, &ledger_fill_batch_size, 10000, 1, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("ledger_cqrs.fill_sync_limit",
							"Largest log that create_projection fills itself; larger logs are filled in batches by the projector.",
							NULL, &ledger_fill_sync_limit, 10000, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	ledger_worker_init();

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("ledger_cqrs");
#else
	EmitWarningsOnPlaceholders("ledger_cqrs");
#endif

	ledger_catalog_init();
	ledger_posting_init();
	ledger_apply_init();
	RegisterXactCallback(reset_maintenance, NULL);
}
