/*-------------------------------------------------------------------------
 *
 * projection.c
 *	  The projection API: verify_projection and rebuild_projection.
 *
 * Today this serves the built-in read models (builtin.c); user-defined
 * projections (create_projection) arrive with the projection engine.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "ledger_cqrs.h"
#include "builtin.h"

PG_FUNCTION_INFO_V1(ledger_verify_projection);
PG_FUNCTION_INFO_V1(ledger_rebuild_projection);

/*
 * lookup_projection -- resolve a projection name or raise 42704.
 */
static const BuiltinModel *
lookup_projection(FunctionCallInfo fcinfo)
{
	char	   *name;
	const BuiltinModel *m;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("projection name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	m = ledger_builtin_lookup(name);
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name),
				 errhint("SELECT name FROM ledger.projection_status lists the projections.")));
	return m;
}

/*
 * ledger.verify_projection(name) -> boolean
 */
Datum
ledger_verify_projection(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ledger_builtin_verify(lookup_projection(fcinfo)));
}

/*
 * ledger.rebuild_projection(name) -> bigint: events replayed
 */
Datum
ledger_rebuild_projection(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(ledger_builtin_rebuild(lookup_projection(fcinfo)));
}
