/*-------------------------------------------------------------------------
 *
 * projection.c
 *	  The projection API: create_projection, drop_projection, catch_up,
 *	  verify_projection and rebuild_projection, for user projections and
 *	  (verify, rebuild) the built-in read models.
 *
 * create_projection runs with the caller's rights: the table is created,
 * and owned, by the caller, in the caller's search_path, which needs CREATE
 * on the schema, and the caller must be able to read ledger.events.  The
 * query itself is analyzed with search_path = pg_catalog, pg_temp, and
 * everything after the table exists (registry, guard trigger, fill) runs as
 * the extension's owner, who also runs every later fold.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "commands/event_trigger.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/regproc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "ledger.h"
#include "builtin.h"
#include "readlog.h"
#include "projection.h"

PG_FUNCTION_INFO_V1(ledger_create_projection);
PG_FUNCTION_INFO_V1(ledger_drop_projection);
PG_FUNCTION_INFO_V1(ledger_guard_projection_tables);
PG_FUNCTION_INFO_V1(ledger_catch_up);
PG_FUNCTION_INFO_V1(ledger_verify_projection);
PG_FUNCTION_INFO_V1(ledger_rebuild_projection);
PG_FUNCTION_INFO_V1(ledger_snapshot_projection);

int			ledger_projection_snapshot_interval = 100000;

/* drop_projection is dropping the table: the event trigger lets it */
static bool dropping_projection_table = false;

/* how many snapshots of one projection are kept */
#define PROJECTION_SNAPSHOTS_KEPT 3

/* A user projection's registry row, as the API functions need it. */
typedef struct RegistryRow
{
	char	   *name;
	bool		async;
	char	   *state;
	char	   *definition;
	char	   *target;			/* quoted schema.table */
	Oid			owner;			/* of the table */
	Oid			relid;			/* the table; InvalidOid if it is gone */
	FullTransactionId checkpoint_order;
	int64		checkpoint_position;
} RegistryRow;

static char *
name_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *s;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
	s = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	return s;
}

/* how lookup_registry reads the registry row */
typedef enum RegistryRead
{
	REGISTRY_LATEST,			/* what has committed by now */
	REGISTRY_AS_OF_STATEMENT,	/* with the calling statement's snapshot */
	REGISTRY_FOR_UPDATE			/* latest, and locked */
} RegistryRead;

/*
 * lookup_registry -- the user projection called name: as created; else
 * read as an SQL name, [schema.]table by the identifier rules, and matched
 * against the table (schema-qualified) or against the names as created
 * (unqualified; two in different schemas make it ambiguous); else as the
 * table's schema and name joined by a dot, unquoted ("public.weird name").
 * NULL if there is none.  Caller is connected to SPI.
 */
static RegistryRow *
lookup_registry(const char *name, RegistryRead how)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3] = {CStringGetTextDatum(name)};
	char		nulls[3] = {' ', 'n', 'n'};
	char	   *schema = NULL;
	char	   *table = NULL;
	char	   *chosen = NULL;
	RegistryRow *r;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	uint64		i;

	if (ledger_split_projection_name(name, &schema, &table))
	{
		values[2] = CStringGetTextDatum(table);
		nulls[2] = ' ';
		if (schema != NULL)
		{
			values[1] = CStringGetTextDatum(schema);
			nulls[1] = ' ';
		}
	}

	/* the candidates, unlocked: their names as created and their tables */
	if (SPI_execute_with_args("SELECT name, target_schema, target_table FROM ledger.projections"
							  " WHERE kind OPERATOR(pg_catalog.=) 'user' AND (name OPERATOR(pg_catalog.=) $1"
							  " OR target_table OPERATOR(pg_catalog.=) $3"
							  " AND ($2 IS NULL OR target_schema OPERATOR(pg_catalog.=) $2)"
							  " OR target_schema OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) target_table"
							  " OPERATOR(pg_catalog.=) $1)",
							  3, types, values, nulls, how == REGISTRY_AS_OF_STATEMENT, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ledger.projections");
	desc = SPI_tuptable->tupdesc;

	/* as created wins; then the SQL name's table, or an unqualified name */
	for (i = 0; i < SPI_processed && chosen == NULL; i++)
		if (strcmp(SPI_getvalue(SPI_tuptable->vals[i], desc, 1), name) == 0)
			chosen = SPI_getvalue(SPI_tuptable->vals[i], desc, 1);
	for (i = 0; i < SPI_processed && chosen == NULL && schema != NULL; i++)
		if (strcmp(SPI_getvalue(SPI_tuptable->vals[i], desc, 2), schema) == 0 &&
			strcmp(SPI_getvalue(SPI_tuptable->vals[i], desc, 3), table) == 0)
			chosen = SPI_getvalue(SPI_tuptable->vals[i], desc, 1);
	if (chosen == NULL && table != NULL && schema == NULL)
	{
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *created = SPI_getvalue(SPI_tuptable->vals[i], desc, 1);
			char	   *created_schema;
			char	   *created_table;

			if (!ledger_split_projection_name(created, &created_schema, &created_table) ||
				created_schema != NULL)
				continue;
			if (chosen != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_AMBIGUOUS_ALIAS),
						 errmsg("projection name \"%s\" is ambiguous", name),
						 errdetail("Projections \"%s\" and \"%s\" are both called that.",
								   chosen, created),
						 errhint("Name it as created, or schema-qualified.")));
			chosen = created;
		}
	}
	/* last, schema and table names joined by a dot, unquoted */
	for (i = 0; i < SPI_processed && chosen == NULL; i++)
		if (strcmp(psprintf("%s.%s", SPI_getvalue(SPI_tuptable->vals[i], desc, 2),
							SPI_getvalue(SPI_tuptable->vals[i], desc, 3)), name) == 0)
			chosen = SPI_getvalue(SPI_tuptable->vals[i], desc, 1);
	if (chosen == NULL)
		return NULL;

	/* the chosen row, read (and locked) as asked: only that one */
	values[0] = CStringGetTextDatum(chosen);
	if (SPI_execute_with_args(psprintf("SELECT name, mode, state, definition, target_schema, target_table,"
									   " checkpoint_order, checkpoint_position FROM ledger.projections"
									   " WHERE name OPERATOR(pg_catalog.=) $1%s",
									   how == REGISTRY_FOR_UPDATE ? " FOR UPDATE" : ""),
							  1, types, values, NULL, how == REGISTRY_AS_OF_STATEMENT, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ledger.projections");
	if (SPI_processed == 0)
		return NULL;			/* dropped meanwhile */
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	r = palloc0(sizeof(RegistryRow));
	r->name = SPI_getvalue(tup, desc, 1);
	r->async = strcmp(SPI_getvalue(tup, desc, 2), "async") == 0;
	r->state = SPI_getvalue(tup, desc, 3);
	r->definition = SPI_getvalue(tup, desc, 4);
	r->target = quote_qualified_identifier(SPI_getvalue(tup, desc, 5), SPI_getvalue(tup, desc, 6));
	r->owner = ledger_table_owner(SPI_getvalue(tup, desc, 5), SPI_getvalue(tup, desc, 6), &r->relid);
	d = SPI_getbinval(tup, desc, 7, &isnull);
	r->checkpoint_order = isnull ? FullTransactionIdFromU64(0) : DatumGetFullTransactionId(d);
	r->checkpoint_position = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
	return r;
}

/* one statement for exec_unless_taken */
typedef struct SpiJob
{
	const char *sql;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	int			expected;
} SpiJob;

static void
spi_job(void *arg)
{
	SpiJob	   *job = arg;
	int			rc = SPI_execute_with_args(job->sql, job->nargs, job->types, job->values,
										   NULL, false, 0);

	if (rc != job->expected)
		elog(ERROR, "SPI_execute failed (%s): %s", SPI_result_code_string(rc), job->sql);
}

/*
 * exec_unless_taken -- run a statement of create_projection that another
 * creator of the same name can race: its table's catalog rows, its registry
 * row.  The unique index makes us wait for that creator; if it commits, the
 * unique violation becomes 42P07, as when the name was taken before.
 */
static void
exec_unless_taken(const char *name, const char *sql, int nargs, Oid *types, Datum *values,
				  int expected)
{
	SpiJob		job = {sql, nargs, types, values, expected};
	ErrorData  *edata = ledger_in_subxact(spi_job, &job);

	if (edata == NULL)
		return;
	if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("projection \"%s\" already exists", name),
				 errdetail("Another session created it first.")));
	ReThrowError(edata);
}

static void
spi_exec(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute failed (%s): %s", SPI_result_code_string(rc), sql);
}

/*
 * lock_log_head -- hold appends still (SHARE lock on ledger.events) in order
 * to read the log up to its head, as an inline projection needs.  Reads
 * after the lock must see every event committed before it, which a
 * transaction snapshot taken earlier (REPEATABLE READ, SERIALIZABLE) would
 * not: those would be lost for good behind the checkpoint.
 */
static void
lock_log_head(const char *what)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s of an inline projection cannot run in a REPEATABLE READ or SERIALIZABLE transaction", what),
				 errdetail("It reads the log up to its head under a lock, and a transaction snapshot older than the lock would miss events."),
				 errhint("Run it in a READ COMMITTED transaction.")));
	ledger_lock_events(ShareLock);
}

static int64
spi_count(const char *sql)
{
	bool		isnull;

	spi_exec(sql, SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* the extension's owner: the owner of ledger.events */
Oid
ledger_extension_owner(void)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(ledger_catalog()->events));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for ledger.events");
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * check_rights -- drop_projection, rebuild_projection and verify_projection
 * run with their caller's rights (no SECURITY DEFINER) and act as the
 * extension's owner only after this check: the caller must own the table
 * (be a member of its owner's role) to drop or rebuild it, and be able to
 * SELECT from it to verify it.
 */
static void
check_rights(RegistryRow *r, Oid caller, bool select_only)
{
	if (superuser_arg(caller))
		return;
	if (!OidIsValid(r->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s of projection \"%s\" does not exist", r->target, r->name),
				 errdetail("Without its table, no owner of the projection can be told from other roles."),
				 errhint("Give the table its name back, or have a superuser act on the projection.")));
	if (has_privs_of_role(caller, r->owner))
		return;
	if (!select_only)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", r->target),
				 errdetail("Only the owner of projection \"%s\"'s table may drop or rebuild it.",
						   r->name)));
	if (pg_class_aclcheck(r->relid, caller, ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", r->target),
				 errdetail("Verifying projection \"%s\" reads its table.", r->name)));
}

/* the cursor of the last committed event below the horizon of snap */
static void
last_event_below(FullTransactionId horizon, FullTransactionId *order, int64 *position)
{
	Oid			types[1] = {XID8OID};
	Datum		values[1] = {FullTransactionIdGetDatum(horizon)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT tx_order, position FROM ledger.events"
							  " WHERE tx_order OPERATOR(pg_catalog.<) $1"
							  " ORDER BY tx_order DESC, position DESC LIMIT 1",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ledger.events");
	if (SPI_processed == 0)
	{
		*order = FullTransactionIdFromU64(0);
		*position = 0;
		return;
	}
	*order = DatumGetFullTransactionId(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
	*position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull));
}

static void
set_cursor(const char *name, FullTransactionId order, int64 position, int64 applied,
		   const char *state, bool clear_error)
{
	Oid			types[5] = {TEXTOID, XID8OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[5];
	char	   *sql = psprintf("UPDATE ledger.projections SET checkpoint_order = $2,"
							   " checkpoint_position = $3, events_applied = $4, state = $5,"
							   " updated_at = pg_catalog.clock_timestamp()%s"
							   " WHERE name OPERATOR(pg_catalog.=) $1",
							   clear_error ? ", last_error = NULL" : "");

	values[0] = CStringGetTextDatum(name);
	values[1] = FullTransactionIdGetDatum(order);
	values[2] = Int64GetDatum(position);
	values[3] = Int64GetDatum(applied);
	values[4] = CStringGetTextDatum(state);
	if (SPI_execute_with_args(sql, 5, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update projection \"%s\"", name);
}

static int64 events_between(FullTransactionId from_order, int64 from_position,
							 FullTransactionId to_order, int64 to_position, int64 above);

typedef struct ParseJob
{
	const char *query;
	ProjectionDef *def;
} ParseJob;

static void
parse_job(void *arg)
{
	ParseJob   *job = arg;

	job->def = ledger_parse_projection(job->query);
}

/*
 * parse_definition -- create_projection's query, analyzed and checked with
 * search_path = pg_catalog, pg_temp, where it will run.  A relation or
 * function that does not resolve there (42P01, 42883) but does in the
 * caller's search_path is named without its schema: that is refused with
 * 0A000, as the contract wants for another table or a volatile function,
 * which is what checking the query in the caller's search_path then says.
 */
static ProjectionDef *
parse_definition(const char *query)
{
	ParseJob	job = {query, NULL};
	int			nest = ledger_push_fixed_search_path();
	ErrorData  *edata = ledger_in_subxact(parse_job, &job);
	ErrorData  *again;

	AtEOXact_GUC(true, nest);
	if (edata == NULL)
		return job.def;
	if (edata->sqlerrcode != ERRCODE_UNDEFINED_TABLE &&
		edata->sqlerrcode != ERRCODE_UNDEFINED_FUNCTION)
		ReThrowError(edata);

	again = ledger_in_subxact(parse_job, &job);
	if (again == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection query not supported: it names a %s without its schema",
						edata->sqlerrcode == ERRCODE_UNDEFINED_TABLE ? "relation" : "function"),
				 errdetail("The query is analyzed and run with search_path = pg_catalog, pg_temp, where %s.",
						   edata->message),
				 errhint("Qualify the name with its schema.")));
	if (again->sqlerrcode == ERRCODE_FEATURE_NOT_SUPPORTED)
		ReThrowError(again);
	ReThrowError(edata);
	return NULL;				/* keep the compiler quiet */
}

/*
 * ledger.create_projection(name, query, mode) -> void
 */
Datum
ledger_create_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "projection name");
	char	   *query;
	char	   *mode;
	bool		async;
	List	   *names;
	RangeVar   *rv;
	Oid			nsp;
	char	   *schema;
	char	   *target;
	ProjectionDef *def;
	StringInfoData ddl;
	int			nest;
	int			i;
	bool		first;
	Oid			save_uid;
	int			save_sec;
	int64		nevents;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("projection query must not be NULL")));
	query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	mode = name_arg(fcinfo, 2, "mode");
	if (strcmp(mode, "inline") == 0)
		async = false;
	else if (strcmp(mode, "async") == 0)
		async = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown projection mode \"%s\"", mode),
				 errhint("The modes are inline and async.")));

	/* the definition first: its errors come before any about the name */
	def = parse_definition(query);

	/* the table: in the caller's search_path, with the caller's rights */
#if PG_VERSION_NUM >= 160000
	names = stringToQualifiedNameList(name, NULL);
#else
	names = stringToQualifiedNameList(name);
#endif
	rv = makeRangeVarFromNameList(names);
	nsp = RangeVarGetAndCheckCreationNamespace(rv, NoLock, NULL);
	if (isAnyTempNamespace(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot be a temporary table"),
				 errhint("Every session's appends maintain it; name a permanent schema.")));
	schema = get_namespace_name(nsp);
	if (OidIsValid(get_relname_relid(rv->relname, nsp)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation \"%s.%s\" already exists", schema, rv->relname)));
	if (pg_class_aclcheck(ledger_catalog()->events, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table ledger.events"),
				 errdetail("A projection exposes what it aggregates, so its creator must be able to read the log.")));
	target = quote_qualified_identifier(schema, rv->relname);

	nest = ledger_push_fixed_search_path();
	SPI_connect();
	{
		LedgerUserSwitch as_extension;
		bool		taken;

		ledger_become(ledger_extension_owner(), false, &as_extension);
		taken = lookup_registry(name, REGISTRY_LATEST) != NULL ||
			lookup_registry(target, REGISTRY_LATEST) != NULL;
		ledger_restore_user(&as_extension);
		if (taken)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_TABLE),
					 errmsg("projection \"%s\" already exists", name)));
		/* the API functions would take the name for the built-in model */
		if (ledger_builtin_lookup(name) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_TABLE),
					 errmsg("projection \"%s\" already exists", name),
					 errdetail("It names the built-in read model %s.",
							   ledger_builtin_name(ledger_builtin_lookup(name))),
					 errhint("Qualify the name with the schema, e.g. %s.", target)));
	}

	initStringInfo(&ddl);
	appendStringInfo(&ddl, "CREATE TABLE %s (", target);
	for (i = 0; i < def->ncols; i++)
	{
		appendStringInfo(&ddl, "%s%s %s", i > 0 ? ", " : "",
						 quote_identifier(def->colnames[i]),
						 format_type_with_typemod(def->coltypes[i], def->coltypmods[i]));
		/*
		 * The query's collation, so that the table's keys and the min and max
		 * folded into it compare as the query does (a recomputation would).
		 */
		if (OidIsValid(def->colcollations[i]) && def->colcollations[i] != DEFAULT_COLLATION_OID)
			appendStringInfo(&ddl, " COLLATE %s", generate_collation_name(def->colcollations[i]));
		if (def->kinds[i] == PROJ_COUNT)
			appendStringInfoString(&ddl, " NOT NULL");
	}
	appendStringInfoString(&ddl, ", PRIMARY KEY (");
	first = true;
	for (i = 0; i < def->ncols; i++)
		if (def->kinds[i] == PROJ_KEY)
		{
			appendStringInfo(&ddl, "%s%s", first ? "" : ", ", quote_identifier(def->colnames[i]));
			first = false;
		}
	appendStringInfoString(&ddl, "))");
	exec_unless_taken(name, ddl.data, 0, NULL, NULL, SPI_OK_UTILITY);

	/*
	 * The table belongs with the extension: DROP EXTENSION refuses without
	 * CASCADE and takes it along with CASCADE.  (A normal dependency, not
	 * membership, so pg_dump still dumps the table and its rows.)
	 */
	{
		ObjectAddress table;
		ObjectAddress extension;

		ObjectAddressSet(table, RelationRelationId, get_relname_relid(rv->relname, nsp));
		ObjectAddressSet(extension, ExtensionRelationId, get_extension_oid("ledger_cqrs", false));
		recordDependencyOn(&table, &extension, DEPENDENCY_NORMAL);
	}

	/* the rest as the extension's owner */
	GetUserIdAndSecContext(&save_uid, &save_sec);
	SetUserIdAndSecContext(ledger_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);

	spi_exec(psprintf("CREATE TRIGGER ledger_projection_guard BEFORE INSERT OR UPDATE OR DELETE"
					  " OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION ledger.projection_guard()",
					  target), SPI_OK_UTILITY);
	spi_exec(psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_projection_guard", target),
			 SPI_OK_UTILITY);
	spi_exec(psprintf("COMMENT ON TABLE %s IS %s", target,
					  quote_literal_cstr(psprintf("ledger_cqrs projection %s", name))),
			 SPI_OK_UTILITY);

	{
		Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
		Datum		values[8];
		Datum	   *cols = palloc(sizeof(Datum) * def->ncols);
		Datum	   *kinds = palloc(sizeof(Datum) * def->ncols);
		static const char *const kind_names[] = {"key", "count", "sum", "min", "max"};

		for (i = 0; i < def->ncols; i++)
		{
			cols[i] = CStringGetTextDatum(def->colnames[i]);
			kinds[i] = CStringGetTextDatum(kind_names[def->kinds[i]]);
		}
		values[0] = CStringGetTextDatum(name);
		values[1] = CStringGetTextDatum(mode);
		values[2] = CStringGetTextDatum(def->query);
		values[3] = CStringGetTextDatum(ledger_projection_stamp(def));
		values[4] = CStringGetTextDatum(schema);
		values[5] = CStringGetTextDatum(rv->relname);
		values[6] = PointerGetDatum(construct_array(cols, def->ncols, TEXTOID, -1, false, TYPALIGN_INT));
		values[7] = PointerGetDatum(construct_array(kinds, def->ncols, TEXTOID, -1, false, TYPALIGN_INT));
		exec_unless_taken(name, "INSERT INTO ledger.projections (name, kind, mode, state, definition,"
						  " definition_hash, target_schema, target_table, columns, column_kinds)"
						  " VALUES ($1, 'user', $2, 'catching_up', $3, $4, $5, $6, $7, $8)",
						  8, types, values, SPI_OK_INSERT);
	}

	/*
	 * Fill.  A small log is folded right here: for inline mode under SHARE
	 * lock on ledger.events, held to commit, so that appenders that follow
	 * fold inline.  A large log is left to the projector in batches.
	 */
	/* positions bound the number of events; the index answers at once */
	nevents = spi_count("SELECT COALESCE(pg_catalog.max(position), 0) FROM ledger.events");
	if (nevents <= ledger_fill_sync_limit)
	{
		FullTransactionId order;
		int64		position;

		if (!async)
		{
			lock_log_head("create_projection");
			last_event_below(FullTransactionIdFromU64(PG_UINT64_MAX), &order, &position);
			ledger_fold_range(def, target, save_uid, FullTransactionIdFromU64(0), 0, order, position, true, 0);
		}
		else
		{
			last_event_below(ledger_log_horizon(GetTransactionSnapshot()), &order, &position);
			ledger_fold_range(def, target, save_uid, FullTransactionIdFromU64(0), 0, order, position, false, 0);
		}
		set_cursor(name, order, position,
				   events_between(FullTransactionIdFromU64(0), 0, order, position, 0),
				   "live", true);
	}
	else
	{
		spi_exec(psprintf("UPDATE ledger.projections SET fill_total = %lld"
						  " WHERE name OPERATOR(pg_catalog.=) %s",
						  (long long) nevents, quote_literal_cstr(name)), SPI_OK_UPDATE);
		ledger_note_async_work();
		(void) ledger_ensure_projector();
	}
	ledger_projections_changed();

	SetUserIdAndSecContext(save_uid, save_sec);
	SPI_finish();
	AtEOXact_GUC(true, nest);
	PG_RETURN_VOID();
}

/*
 * ledger.drop_projection(name) -> void
 */
Datum
ledger_drop_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "projection name");
	Oid			caller = GetUserId();
	LedgerUserSwitch as_extension;
	RegistryRow *r;

	if (ledger_builtin_lookup(name) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection \"%s\" is built in and cannot be dropped", name)));
	ledger_become(ledger_extension_owner(), false, &as_extension);
	SPI_connect();
	r = lookup_registry(name, REGISTRY_LATEST);
	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name)));
	check_rights(r, caller, false);
	/* no appender folds into it between our drop and our commit */
	ledger_lock_events(ShareLock);
	r = lookup_registry(name, REGISTRY_FOR_UPDATE);
	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name)));
	check_rights(r, caller, false);
	dropping_projection_table = true;
	PG_TRY();
	{
		spi_exec(psprintf("DROP TABLE IF EXISTS %s", r->target), SPI_OK_UTILITY);
	}
	PG_FINALLY();
	{
		dropping_projection_table = false;
	}
	PG_END_TRY();
	spi_exec(psprintf("DELETE FROM ledger.projections WHERE name OPERATOR(pg_catalog.=) %s",
					  quote_literal_cstr(r->name)), SPI_OK_DELETE);
	/* its snapshots go with it: a new projection of that name starts afresh */
	spi_exec(psprintf("DELETE FROM ledger.projection_snapshots WHERE name OPERATOR(pg_catalog.=) %s",
					  quote_literal_cstr(r->name)), SPI_OK_DELETE);
	ledger_projections_changed();
	SPI_finish();
	ledger_restore_user(&as_extension);
	PG_RETURN_VOID();
}

/*
 * ledger.guard_projection_tables() -- event trigger on sql_drop: a user
 * projection's table may only be dropped by ledger.drop_projection.  A
 * projection whose table vanished would fail every append (inline) or every
 * catch-up (async) until dropped.
 */
Datum
ledger_guard_projection_tables(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "ledger.guard_projection_tables() must be called as an event trigger");
	if (dropping_projection_table || creating_extension)
		PG_RETURN_NULL();

	SPI_connect();
	/* DROP EXTENSION drops the registry along with this trigger */
	if (OidIsValid(get_relname_relid("projections", get_namespace_oid("ledger", true))))
	{
		if (SPI_execute("SELECT p.name, pg_catalog.quote_ident(p.target_schema) OPERATOR(pg_catalog.||) '.'"
						" OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p.target_table)"
						" FROM pg_catalog.pg_event_trigger_dropped_objects() o"
						" JOIN ledger.projections p ON p.kind OPERATOR(pg_catalog.=) 'user'"
						" AND p.target_schema OPERATOR(pg_catalog.=) o.schema_name"
						" AND p.target_table OPERATOR(pg_catalog.=) o.object_name"
						" WHERE o.object_type OPERATOR(pg_catalog.=) 'table' LIMIT 1",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the dropped objects");
		if (SPI_processed > 0)
		{
			char	   *name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			char	   *table = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop table %s because projection \"%s\" maintains it", table, name),
					 errhint("Drop the projection, and its table with it, with ledger.drop_projection(%s).",
							 quote_literal_cstr(name))));
		}
	}
	SPI_finish();
	PG_RETURN_NULL();
}

/*
 * ledger.catch_up(name, max_events) -> bigint: events applied
 */
Datum
ledger_catch_up(PG_FUNCTION_ARGS)
{
	int64		max_events = -1;
	int64		applied;

	if (!PG_ARGISNULL(1))
	{
		max_events = PG_GETARG_INT64(1);
		if (max_events < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_events must not be negative")));
	}
	SPI_connect();
	if (PG_ARGISNULL(0))
		applied = ledger_catch_up_all(max_events);
	else
	{
		char	   *name = name_arg(fcinfo, 0, "projection name");
		RegistryRow *r;

		if (ledger_builtin_lookup(name) != NULL)
			applied = 0;		/* built-ins never lag */
		else if ((r = lookup_registry(name, REGISTRY_LATEST)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("projection \"%s\" does not exist", name)));
		else
			applied = ledger_catch_up_projection(r->name, max_events, true);
	}
	SPI_finish();
	PG_RETURN_INT64(applied);
}

/*
 * verify_user -- recompute from the log (up to the checkpoint, for a
 * projection that follows it) and compare, EXCEPT ALL both ways.
 */
static bool
verify_user(RegistryRow *r)
{
	ProjectionDef *def = ledger_parse_projection(r->definition);
	bool		follows = r->async || strcmp(r->state, "live") != 0;
	char	   *source;
	char	   *cols = ledger_projection_columns(def, NULL);
	char	   *keys;
	StringInfoData kb;
	int			i;
	bool		ok;

	if (follows)
		source = ledger_projection_source(def, psprintf("ROW(tx_order, position) OPERATOR(pg_catalog.<=)"
														" ROW('%llu'::pg_catalog.xid8, %lld)",
														(unsigned long long) U64FromFullTransactionId(r->checkpoint_order),
														(long long) r->checkpoint_position));
	else
		source = psprintf("%s\n", def->query);	/* ends a trailing -- comment */

	initStringInfo(&kb);
	for (i = 0; i < def->ncols; i++)
		if (def->kinds[i] == PROJ_KEY)
			appendStringInfo(&kb, "%s%s", kb.len > 0 ? ", " : "", quote_identifier(def->colnames[i]));
	keys = kb.data;

	{
		LedgerUserSwitch save;

		/* the recomputation reads literals as every fold does */
		int			nest = ledger_push_fixed_search_path();

		ledger_check_owner(r->owner, r->name, r->target);
		ledger_become(r->owner, true, &save);
		ok = ledger_compare_with_log(r->name, psprintf("SELECT * FROM (%s) q (%s)", source, cols),
									 cols, keys, r->target);
		ledger_restore_user(&save);
		AtEOXact_GUC(true, nest);
	}
	return ok;
}

/*
 * built_with -- the rows of projection name, whose definition is def, were
 * all folded under stamp: the registry keeps the stamp as the table was
 * filled or last rebuilt.  Since then a function it calls may have been
 * replaced, and the table may mix the old results with the new.  One that
 * calls no user-defined function has nothing to mix.
 */
static bool
built_with(const char *name, ProjectionDef *def, const char *stamp)
{
	if (def->funcs == NIL)
		return true;
	return spi_count(psprintf("SELECT pg_catalog.count(*) FROM ledger.projections"
							  " WHERE name OPERATOR(pg_catalog.=) %s"
							  " AND definition_hash OPERATOR(pg_catalog.=) %s",
							  quote_literal_cstr(name), quote_literal_cstr(stamp))) > 0;
}

/*
 * ledger_take_projection_snapshot -- store target's rows as the state of
 * projection name at cursor (order, position), stamped with
 * ledger_projection_stamp; keep the newest few.  The caller guarantees that
 * the rows are exactly the fold of the events up to the cursor (it holds
 * the registry row, and for an inline projection a SHARE lock on
 * ledger.events).  Caller is connected to SPI.  Returns false, and stores
 * nothing, when the rows were not all folded under the current stamp
 * (built_with): no stamp would be true of them.
 */
bool
ledger_take_projection_snapshot(const char *name, ProjectionDef *def, const char *target,
								Oid owner, FullTransactionId order, int64 position, int64 applied,
								bool position_cut)
{
	Oid			types[8] = {TEXTOID, TEXTOID, XID8OID, INT8OID, INT8OID, INT8OID, JSONBOID, BOOLOID};
	Datum		values[8];
	LedgerUserSwitch save;
	int			rc;
	bool		isnull;
	char	   *stamp = ledger_projection_stamp(def);

	if (!built_with(name, def, stamp))
		return false;

	/*
	 * The rows are read as the table's owner, so that nothing the owner
	 * attached to them (a cast to json of a column's type, say) runs with
	 * our rights; they are stored as the extension.  Not read-only: the
	 * read must see what this transaction's fold just wrote.
	 */
	ledger_check_owner(owner, name, target);
	ledger_become(owner, true, &save);
	rc = SPI_execute(psprintf("SELECT pg_catalog.count(*),"
							  " COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t.*)), '[]')"
							  " FROM %s t", target), false, 1);
	ledger_restore_user(&save);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read projection \"%s\" for a snapshot", name);
	values[5] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	values[6] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(stamp);
	values[2] = FullTransactionIdGetDatum(order);
	values[3] = Int64GetDatum(position);
	values[4] = Int64GetDatum(applied);
	values[7] = BoolGetDatum(position_cut);
	if (SPI_execute_with_args("INSERT INTO ledger.projection_snapshots (name, definition_hash,"
							  " checkpoint_order, checkpoint_position, events_applied, row_count, rows,"
							  " position_cut)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
							  8, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not snapshot projection \"%s\"", name);
	if (SPI_execute_with_args(psprintf("DELETE FROM ledger.projection_snapshots s"
									   " WHERE s.name OPERATOR(pg_catalog.=) $1"
									   " AND ROW(s.checkpoint_order, s.checkpoint_position) OPERATOR(pg_catalog.<) ("
									   " SELECT k.checkpoint_order, k.checkpoint_position"
									   " FROM ledger.projection_snapshots k WHERE k.name OPERATOR(pg_catalog.=) $1"
									   " ORDER BY k.checkpoint_order DESC, k.checkpoint_position DESC"
									   " OFFSET %d LIMIT 1)", PROJECTION_SNAPSHOTS_KEPT - 1),
							  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune snapshots of projection \"%s\"", name);
	return true;
}

/*
 * snapshot_columns -- the select list that reads a snapshot's row j (as
 * to_jsonb made it) back into the table's columns, through r, its
 * jsonb_populate_record.  A jsonb column is taken from j itself: r would
 * turn a JSON null (a legal group key, e.g. data->'x' of {"x": null})
 * into SQL NULL.  Group keys are never SQL NULL (they are the primary key),
 * and no allowed aggregate is jsonb, so JSON null there is always JSON null.
 */
static char *
snapshot_columns(ProjectionDef *def)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < def->ncols; i++)
	{
		const char *col = quote_identifier(def->colnames[i]);

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (def->coltypes[i] == JSONBOID)
			appendStringInfo(&buf, "j OPERATOR(pg_catalog.->) %s",
							 quote_literal_cstr(def->colnames[i]));
		else
			appendStringInfo(&buf, "r.%s", col);
	}
	return buf.data;
}

/*
 * latest_snapshot -- the newest snapshot of name stamped with stamp (see
 * ledger_projection_stamp); false if none.  Loads its rows into table into.
 * *position_cut: it holds exactly the events at or below *position (an
 * inline projection's, taken with appends held still); else exactly those
 * at or before the cursor (*order, *position).  Only an inline projection
 * (cuts_ok) may start from a cut: an async one goes on from its cursor.
 */
static bool
latest_snapshot(const char *name, ProjectionDef *def, const char *stamp, const char *target,
				Oid owner, const char *into, bool cuts_ok, FullTransactionId *order, int64 *position,
				int64 *applied, bool *position_cut)
{
	Oid			types[3] = {TEXTOID, TEXTOID, BOOLOID};
	Datum		values[3];
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(stamp);
	values[2] = BoolGetDatum(cuts_ok);
	if (SPI_execute_with_args("SELECT checkpoint_order, checkpoint_position, events_applied, rows, position_cut"
							  " FROM ledger.projection_snapshots"
							  " WHERE name OPERATOR(pg_catalog.=) $1 AND definition_hash OPERATOR(pg_catalog.=) $2"
							  " AND (NOT position_cut OR $3)"
							  " ORDER BY checkpoint_order DESC, checkpoint_position DESC LIMIT 1",
							  3, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ledger.projection_snapshots");
	if (SPI_processed == 0)
		return false;
	*order = DatumGetFullTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	*applied = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	*position_cut = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));

	{
		Datum		rows = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
		Oid			jtype = JSONBOID;
		char	   *cols = ledger_projection_columns(def, NULL);
		LedgerUserSwitch save;
		int			rc;

		rows = PointerGetDatum(PG_DETOAST_DATUM_COPY(rows));
		ledger_become(owner, true, &save);
		rc = SPI_execute_with_args(psprintf("INSERT INTO %s (%s) SELECT %s FROM"
											" pg_catalog.jsonb_array_elements($1) j,"
											" LATERAL pg_catalog.jsonb_populate_record(NULL::%s, j) r",
											into, cols, snapshot_columns(def), target),
								   1, &jtype, &rows, NULL, false, 0);
		ledger_restore_user(&save);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not load the snapshot of projection \"%s\"", name);
	}
	return true;
}

/* -1, 0, 1 as cursor a is before, at, after cursor b */
static int
cursor_cmp(FullTransactionId ao, int64 ap, FullTransactionId bo, int64 bp)
{
	if (FullTransactionIdPrecedes(ao, bo))
		return -1;
	if (FullTransactionIdFollows(ao, bo))
		return 1;
	return (ap > bp) - (ap < bp);
}

/* the events after one cursor and up to another, at positions above above */
static int64
events_between(FullTransactionId from_order, int64 from_position,
			   FullTransactionId to_order, int64 to_position, int64 above)
{
	return spi_count(psprintf("SELECT pg_catalog.count(*) FROM ledger.events"
							  " WHERE ROW(tx_order, position) OPERATOR(pg_catalog.>) ROW('%llu'::pg_catalog.xid8, %lld)"
							  " AND ROW(tx_order, position) OPERATOR(pg_catalog.<=) ROW('%llu'::pg_catalog.xid8, %lld)%s",
							  (unsigned long long) U64FromFullTransactionId(from_order), (long long) from_position,
							  (unsigned long long) U64FromFullTransactionId(to_order), (long long) to_position,
							  above > 0 ? psprintf(" AND position OPERATOR(pg_catalog.>) %lld", (long long) above) : ""));
}

/*
 * parse_as_snapshotted -- definition parsed, and its stamp (to *stamp),
 * in the fixed settings that snapshot_projection takes them in: a literal
 * such as '2024-01-01'::timestamptz deparses by TimeZone and DateStyle, and
 * the stamp must not depend on the caller's.
 */
static ProjectionDef *
parse_as_snapshotted(const char *definition, char **stamp)
{
	int			nest = ledger_push_fixed_search_path();
	ProjectionDef *def = ledger_parse_projection(definition);

	*stamp = ledger_projection_stamp(def);
	AtEOXact_GUC(true, nest);
	return def;
}

/*
 * rebuild_user -- recompute into a shadow table while appends go on, then
 * replace the live rows in one step.  Readers see the old complete table
 * until the new one commits.
 */
static int64
rebuild_user(RegistryRow *r)
{
	char	   *stamp;
	ProjectionDef *def = parse_as_snapshotted(r->definition, &stamp);
	char	   *cols = ledger_projection_columns(def, NULL);
	const char *shadow = "pg_temp.ledger_rebuild_shadow";
	FullTransactionId start_order = FullTransactionIdFromU64(0);
	int64		start_position = 0;
	int64		start_applied = 0;
	FullTransactionId order;
	int64		position;
	int64		replayed;
	bool		cut = false;
	int64		above;
	LedgerUserSwitch save;

	/* the rows will all be folded under the current stamp: see built_with */
	spi_exec(psprintf("UPDATE ledger.projections SET state = 'rebuilding', definition_hash = %s,"
					  " updated_at = pg_catalog.clock_timestamp()"
					  " WHERE name OPERATOR(pg_catalog.=) %s",
					  quote_literal_cstr(stamp), quote_literal_cstr(r->name)), SPI_OK_UPDATE);
	{
		/* the shadow belongs to the table's owner, whose role runs the folds */
		LedgerUserSwitch save;

		ledger_check_owner(r->owner, r->name, r->target);
		ledger_become(r->owner, false, &save);
		spi_exec(psprintf("CREATE TEMP TABLE ledger_rebuild_shadow (LIKE %s INCLUDING INDEXES) ON COMMIT DROP",
						  r->target), SPI_OK_UTILITY);
		ledger_restore_user(&save);
	}

	/*
	 * Start from the newest snapshot of this very definition, calling these
	 * very functions, if any.  A cursor snapshot holds the events up to its
	 * cursor, and the replay goes on after it.  A cut (an inline
	 * projection's) holds the events up to a position, and the replay takes
	 * every later position, in the log's order: one appended after the cut
	 * may sort before it there, having got its transaction id earlier.
	 */
	(void) latest_snapshot(r->name, def, stamp, r->target, r->owner, shadow, !r->async,
						   &start_order, &start_position, &start_applied, &cut);
	above = cut ? start_position : 0;
	if (cut)
	{
		start_order = FullTransactionIdFromU64(0);
		start_position = 0;
	}

	/* the bulk, below the horizon, without blocking anyone */
	last_event_below(ledger_log_horizon(GetTransactionSnapshot()), &order, &position);
	if (cursor_cmp(order, position, start_order, start_position) > 0)
		ledger_fold_range(def, shadow, r->owner, start_order, start_position, order, position,
						  false, above);
	else
	{
		order = start_order;
		position = start_position;
	}

	if (!r->async)
	{
		FullTransactionId last_order;
		int64		last_position;

		/* the rest under SHARE lock: appenders wait until we commit */
		lock_log_head("rebuild_projection");
		last_event_below(FullTransactionIdFromU64(PG_UINT64_MAX), &last_order, &last_position);
		if (cursor_cmp(last_order, last_position, order, position) > 0)
		{
			ledger_fold_range(def, shadow, r->owner, order, position, last_order, last_position,
							  true, above);
			order = last_order;
			position = last_position;
		}
	}
	replayed = events_between(start_order, start_position, order, position, above);

	/* as the table's owner: its triggers must not run with our rights */
	ledger_maintenance_depth++;
	ledger_become(r->owner, true, &save);
	PG_TRY();
	{
		spi_exec(psprintf("DELETE FROM %s", r->target), SPI_OK_DELETE);
		spi_exec(psprintf("INSERT INTO %s (%s) SELECT %s FROM %s", r->target, cols, cols, shadow),
				 SPI_OK_INSERT);
	}
	PG_FINALLY();
	{
		ledger_restore_user(&save);
		ledger_maintenance_depth--;
	}
	PG_END_TRY();
	spi_exec("DROP TABLE pg_temp.ledger_rebuild_shadow", SPI_OK_UTILITY);

	set_cursor(r->name, order, position, start_applied + replayed, "live", true);
	ledger_projections_changed();
	return replayed;
}

/*
 * ledger.snapshot_projection(name) -> bigint: the checkpoint position
 */
Datum
ledger_snapshot_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "projection name");
	RegistryRow *r;
	ProjectionDef *def;
	FullTransactionId order;
	int64		position;
	int64		applied;
	int			nest;
	bool		cut;

	if (ledger_builtin_lookup(name) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection \"%s\" is built in; its checkpoints are the balance snapshots", name),
				 errhint("See ledger_cqrs.snapshot_interval and ledger.balance_at().")));
	nest = ledger_push_fixed_search_path();
	SPI_connect();
	r = lookup_registry(name, REGISTRY_FOR_UPDATE);
	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name)));
	def = ledger_parse_projection(r->definition);
	cut = !r->async && strcmp(r->state, "live") == 0;
	if (cut)
	{
		/* an inline projection is at the head of the log: hold it still */
		lock_log_head("snapshot_projection");
		last_event_below(FullTransactionIdFromU64(PG_UINT64_MAX), &order, &position);
		/* the cut is at the highest position, not at the last in log order */
		position = spi_count("SELECT COALESCE(pg_catalog.max(position), 0) FROM ledger.events");
	}
	else
	{
		order = r->checkpoint_order;
		position = r->checkpoint_position;
	}
	applied = spi_count(psprintf("SELECT pg_catalog.count(*) FROM ledger.events"
								 " WHERE ROW(tx_order, position) OPERATOR(pg_catalog.<=) ROW('%llu'::pg_catalog.xid8, %lld)",
								 (unsigned long long) U64FromFullTransactionId(order), (long long) position));
	if (!ledger_take_projection_snapshot(r->name, def, r->target, r->owner, order, position,
										 applied, cut))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("projection \"%s\" may hold rows folded by other versions of the functions it calls",
						r->name),
				 errdetail("A function its definition calls has changed since the table was filled or last rebuilt."),
				 errhint("Rebuild it first: SELECT ledger.rebuild_projection('%s').", r->name)));
	SPI_finish();
	AtEOXact_GUC(true, nest);
	PG_RETURN_INT64(position);
}

static void
auto_snapshot_job(void *name)
{
	if (SPI_execute(psprintf("SELECT ledger.snapshot_projection(%s::pg_catalog.text)",
							 quote_literal_cstr((char *) name)), false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not snapshot projection \"%s\"", (char *) name);
}

/*
 * ledger_auto_snapshot_inline -- snapshot every live inline projection
 * that is projection_snapshot_interval events past its last snapshot.
 * Called by catch-up (the projector); caller is connected to SPI.  Not in
 * REPEATABLE READ or SERIALIZABLE, where snapshot_projection would refuse.
 * A snapshot that fails is a WARNING, and the others go on.
 */
void
ledger_auto_snapshot_inline(void)
{
	ListCell   *lc;
	List	   *due = NIL;

	/* (snapshot_projection of an inline one needs READ COMMITTED) */
	if (ledger_projection_snapshot_interval <= 0 || IsolationUsesXactSnapshot())
		return;
	foreach(lc, ledger_user_projections())
	{
		Projection *p = lfirst(lc);
		ProjectionDef *def;
		char	   *stamp;

		if (p->async || p->state != 'l')
			continue;
		/* none while the table may mix functions' versions: see built_with */
		def = ledger_projection_def(p);
		stamp = ledger_projection_stamp(def);
		if (!built_with(p->name, def, stamp))
			continue;
		if (spi_count(psprintf("SELECT COALESCE(pg_catalog.max(position), 0)"
							   " OPERATOR(pg_catalog.-) COALESCE((SELECT pg_catalog.max(checkpoint_position)"
							   " FROM ledger.projection_snapshots WHERE name OPERATOR(pg_catalog.=) %s"
							   " AND definition_hash OPERATOR(pg_catalog.=) %s), 0) FROM ledger.events",
							   quote_literal_cstr(p->name), quote_literal_cstr(stamp)))
			>= ledger_projection_snapshot_interval)
			due = lappend(due, pstrdup(p->name));
	}
	foreach(lc, due)
	{
		ErrorData  *edata;

		/*
		 * Not one held by someone else (a rebuild, a drop): we may hold
		 * appends still (a hand-over's SHARE lock), and must not wait.
		 */
		if (spi_count(psprintf("SELECT pg_catalog.count(*) FROM (SELECT 1 FROM ledger.projections"
							   " WHERE name OPERATOR(pg_catalog.=) %s FOR UPDATE SKIP LOCKED) l",
							   quote_literal_cstr((char *) lfirst(lc)))) == 0)
			continue;
		if ((edata = ledger_in_subxact(auto_snapshot_job, lfirst(lc))) != NULL)
			ereport(WARNING,
					(errmsg("could not snapshot projection \"%s\": %s",
							(char *) lfirst(lc), edata->message)));
	}
}

/*
 * ledger.verify_projection(name) -> boolean
 */
Datum
ledger_verify_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "projection name");
	const BuiltinModel *m = ledger_builtin_lookup(name);
	Oid			caller = GetUserId();
	LedgerUserSwitch as_extension;
	RegistryRow *r;
	bool		ok;

	ledger_become(ledger_extension_owner(), false, &as_extension);
	if (m != NULL)
	{
		ok = ledger_builtin_verify(m);
		ledger_restore_user(&as_extension);
		PG_RETURN_BOOL(ok);
	}
	SPI_connect();

	/*
	 * The checkpoint and the rows compared with the log must be of the same
	 * batch: both are read with the calling statement's snapshot (as
	 * ledger_compare_with_log reads), so a catch-up committing in between
	 * cannot pair one batch's cursor with another's rows.  No lock: verify
	 * holds up no catch-up, and runs in a read-only transaction.
	 */
	r = lookup_registry(name, REGISTRY_AS_OF_STATEMENT);
	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name),
				 errhint("SELECT name FROM ledger.projection_status lists the projections.")));
	check_rights(r, caller, true);
	ok = verify_user(r);
	SPI_finish();
	ledger_restore_user(&as_extension);
	PG_RETURN_BOOL(ok);
}

/*
 * mark_rebuilding -- hold, until commit, the lock that projection_status
 * reads as state 'rebuilding' (the registry row's own state is written in
 * the rebuild's transaction, which no one else sees before it commits).
 */
static void
mark_rebuilding(const char *name)
{
	ledger_lock_hash(hash_bytes_extended((const unsigned char *) name, strlen(name), 0),
					 LEDGER_LOCK_REBUILD, ExclusiveLock);
}

/*
 * ledger.rebuild_projection(name) -> bigint: events replayed
 */
Datum
ledger_rebuild_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0, "projection name");
	const BuiltinModel *m = ledger_builtin_lookup(name);
	Oid			caller = GetUserId();
	LedgerUserSwitch as_extension;
	RegistryRow *r;
	int64		n;

	ledger_become(ledger_extension_owner(), false, &as_extension);
	if (m != NULL)
	{
		mark_rebuilding(ledger_builtin_name(m));
		n = ledger_builtin_rebuild(m);
		ledger_restore_user(&as_extension);
		PG_RETURN_INT64(n);
	}
	SPI_connect();
	r = lookup_registry(name, REGISTRY_LATEST);
	if (r != NULL)
	{
		/* before the row lock: a caller without rights holds up nobody */
		check_rights(r, caller, false);
		r = lookup_registry(name, REGISTRY_FOR_UPDATE);
	}
	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name),
				 errhint("SELECT name FROM ledger.projection_status lists the projections.")));
	check_rights(r, caller, false);
	mark_rebuilding(r->name);
	n = rebuild_user(r);
	SPI_finish();
	ledger_restore_user(&as_extension);
	PG_RETURN_INT64(n);
}
