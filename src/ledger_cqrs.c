/*-------------------------------------------------------------------------
 *
 * ledger_cqrs.c
 *	  Module entry point: GUCs and cache callbacks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "ledger_cqrs.h"
#include "ledger.h"

PG_MODULE_MAGIC;

bool		ledger_restoring = false;
int			ledger_maintenance_depth = 0;

void		_PG_init(void);

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

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("ledger_cqrs");
#else
	EmitWarningsOnPlaceholders("ledger_cqrs");
#endif

	ledger_catalog_init();
	ledger_posting_init();
}
