/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The append-only rule of ledger.events, enforced by a C trigger that is
 *	  ENABLE ALWAYS, so it fires for every role, the superuser included, and
 *	  under session_replication_role = replica.
 *
 * UPDATE, DELETE and TRUNCATE are refused outright.  INSERT and COPY are
 * refused too: the append functions write the heap directly and never fire
 * these triggers.  Two writers are let through, both of which carry events
 * that were appended properly somewhere else:
 *
 *	- a logical replication worker on a subscriber (initial sync is a COPY,
 *	  apply is row by row);
 *	- pg_restore run by a superuser with ledger_cqrs.restoring = on.
 *
 * For those rows the row trigger recomputes tx_order locally, since the
 * publisher's or the dump's transaction ids mean nothing here, and on a
 * subscriber an AFTER trigger folds each replicated event into the local
 * projections.
 *
 * An event trigger keeps these triggers, and the read-only guards of the
 * read models and projection tables, from being switched off or dropped,
 * and the tables they guard from DDL that would get around them
 * (ledger_guard_ddl).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/logicalworker.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "projection.h"

PG_FUNCTION_INFO_V1(ledger_events_guard);
PG_FUNCTION_INFO_V1(ledger_projections_restore);
PG_FUNCTION_INFO_V1(ledger_events_replicated);
PG_FUNCTION_INFO_V1(ledger_guard_ddl);

static const char *
trigger_operation(TriggerEvent ev)
{
	if (TRIGGER_FIRED_BY_INSERT(ev))
		return "INSERT";
	if (TRIGGER_FIRED_BY_UPDATE(ev))
		return "UPDATE";
	if (TRIGGER_FIRED_BY_DELETE(ev))
		return "DELETE";
	return "TRUNCATE";
}

/*
 * restamp_row -- give a replicated or restored row this database's tx_order.
 *
 * It is raised to the stream's previous key, read with no local appender
 * in between: a SHARE ROW EXCLUSIVE lock on ledger.events, which appenders'
 * ROW EXCLUSIVE conflicts with, held to commit.  One lock for the whole
 * transaction, not one per stream: a restore (one COPY) or a replicated
 * transaction may carry more streams than the shared lock table holds.
 */
static HeapTuple
restamp_row(Relation rel, HeapTuple row)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		isnull;
	Datum		stream = heap_getattr(row, Anum_events_stream, desc, &isnull);
	LedgerStreamHead head;
	int			col = Anum_events_tx_order;
	Datum		value;
	bool		null = false;

	if (isnull)
		return row;				/* the NOT NULL constraint reports it */
	LockRelationOid(RelationGetRelid(rel), ShareRowExclusiveLock);
	head = ledger_stream_head(rel, DatumGetTextPP(stream), GetLatestSnapshot());
	value = FullTransactionIdGetDatum(ledger_next_tx_order(head));
	return heap_modify_tuple_by_cols(row, desc, 1, &col, &value, &null);
}

/*
 * ledger_events_guard -- BEFORE trigger (statement and row) on ledger.events.
 */
Datum
ledger_events_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TriggerEvent ev;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ledger_events_guard: not called by trigger manager");
	ev = td->tg_event;

	if (TRIGGER_FIRED_BY_INSERT(ev))
	{
		if (IsLogicalWorker() || ledger_restoring)
		{
			if (TRIGGER_FIRED_FOR_ROW(ev))
				return PointerGetDatum(restamp_row(td->tg_relation, td->tg_trigtuple));
			return PointerGetDatum(NULL);
		}
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("ledger.events is append-only: rows enter only through ledger.append and ledger.append_events"),
				 errdetail("A direct INSERT or COPY would bypass stream versions and validation."),
				 errhint("Call ledger.append() or ledger.append_events(), or a ledger command.")));
	}

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("ledger.events is append-only: %s is not allowed",
					trigger_operation(ev)),
			 errdetail("Appended events are never changed or removed, by any role."),
			 errhint("Record a correction by appending a compensating event.")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

/*
 * ledger_projections_restore -- BEFORE INSERT row trigger on
 * ledger.projections.  A user projection loaded by pg_restore cannot be
 * trusted against the restored log: a cursor means nothing once tx_order
 * values are new, and positions 1-9 are not in the dump but appended afresh
 * by CREATE EXTENSION, with new times.  Mark every one to be emptied and
 * refilled from the log by catch-up.
 */
Datum
ledger_projections_restore(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	row;
	bool		isnull;
	char	   *kind;
	int			cols[5];
	Datum		values[5];
	bool		nulls[5] = {false, false, true, false, false};

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "ledger_projections_restore: not called as a row trigger");
	row = td->tg_trigtuple;
	if (!ledger_restoring)
		return PointerGetDatum(row);

	desc = RelationGetDescr(td->tg_relation);
	kind = TextDatumGetCString(heap_getattr(row, SPI_fnumber(desc, "kind"), desc, &isnull));
	if (strcmp(kind, "user") != 0)
		return PointerGetDatum(row);

	cols[0] = SPI_fnumber(desc, "state");
	values[0] = CStringGetTextDatum("catching_up");
	cols[1] = SPI_fnumber(desc, "needs_reset");
	values[1] = BoolGetDatum(true);
	cols[2] = SPI_fnumber(desc, "checkpoint_order");
	values[2] = (Datum) 0;
	cols[3] = SPI_fnumber(desc, "checkpoint_position");
	values[3] = Int64GetDatum(0);
	cols[4] = SPI_fnumber(desc, "events_applied");
	values[4] = Int64GetDatum(0);
	return PointerGetDatum(heap_modify_tuple_by_cols(row, desc, 5, cols, values, nulls));
}

/*
 * ledger_events_replicated -- AFTER INSERT row trigger on ledger.events,
 * ENABLE ALWAYS.  On a logical replication subscriber the apply worker
 * inserts the publisher's events through the executor; fold each into the
 * subscriber's own inline projections (and wake its projector for the async
 * ones), exactly as an append would.  The built-in read models are
 * replicated as tables; the read-model guards admit the apply worker.
 */
Datum
ledger_events_replicated(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		isnull;
	int64		position;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "ledger_events_replicated: not called as a row trigger");
	if (!IsLogicalWorker())
		return PointerGetDatum(NULL);
	position = DatumGetInt64(heap_getattr(td->tg_trigtuple, Anum_events_position,
										  RelationGetDescr(td->tg_relation), &isnull));
	ledger_apply_inline(&position, 1);
	return PointerGetDatum(NULL);
}

/*
 * guard_trigger -- the name of a trigger on relid that belongs to the
 * extension (its function is one of ours) and is called name, or any such
 * trigger when name is NULL; NULL if there is none.
 */
static char *
guard_trigger(Oid relid, const char *name, Oid extension)
{
	Relation	tgrel = table_open(TriggerRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *found = NULL;

	ScanKeyInit(&key[0], Anum_pg_trigger_tgrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	if (name != NULL)
		ScanKeyInit(&key[1], Anum_pg_trigger_tgname, BTEqualStrategyNumber, F_NAMEEQ,
					CStringGetDatum(name));
	scan = systable_beginscan(tgrel, TriggerRelidNameIndexId, true, NULL,
							  name != NULL ? 2 : 1, key);
	while (found == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);

		if (getExtensionOfObject(ProcedureRelationId, tg->tgfoid) == extension)
			found = pstrdup(NameStr(tg->tgname));
	}
	systable_endscan(scan);
	table_close(tgrel, AccessShareLock);
	return found;
}

/* a relation the command may change at all: PostgreSQL refuses the rest */
static bool
may_alter(Oid relid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(RelationRelationId, relid, GetUserId());
#else
	return pg_class_ownercheck(relid, GetUserId());
#endif
}

static char *
relation_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* one of the extension's relations, or an index of one */
static bool
extension_relation(Oid relid, Oid extension)
{
	if (get_rel_relkind(relid) == RELKIND_INDEX)
		relid = IndexGetRelation(relid, false);
	return getExtensionOfObject(RelationRelationId, relid) == extension;
}

/*
 * guarded -- relid is one of the extension's relations, or a table it
 * guards with one of its triggers (a projection's table).
 */
static bool
guarded(Oid relid, Oid extension)
{
	return OidIsValid(relid) &&
		(extension_relation(relid, extension) ||
		 guard_trigger(relid, NULL, extension) != NULL);
}

/*
 * Why a guarded table stays out of inheritance trees and partitioned
 * tables: statement triggers fire only on the table a statement names, so
 * writes routed through a parent would pass the guard, and a parent's scans
 * would show a child's rows.
 */
#define HIERARCHY_DETAIL "Writes or reads through another table would pass the extension's guards."

/* refuse_guarded -- refuse what, if relid is guarded */
static void
refuse_guarded(Oid relid, Oid extension, const char *what, const char *detail)
{
	if (guarded(relid, extension))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s is guarded by ledger_cqrs: %s is not allowed", relation_name(relid), what),
				 errdetail("%s", detail)));
}

static void
refuse_trigger_change(Oid relid, const char *trigger, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("trigger \"%s\" on %s guards ledger_cqrs data: it cannot be %s",
					trigger, relation_name(relid), what),
			 errdetail("The extension's triggers fire for every role, the superuser included, and under any session_replication_role."),
			 errhint("ENABLE ALWAYS TRIGGER is the only change allowed to them.")));
}

/*
 * ledger.guard_triggers() -- event trigger on ddl_command_start for ALTER
 * TABLE (and FOREIGN TABLE, INDEX, SEQUENCE, VIEW), CREATE [FOREIGN] TABLE,
 * CREATE and DROP TRIGGER and CREATE RULE, ENABLE ALWAYS.  The triggers
 * that keep the log append-only and the read models and projection tables
 * read-only must not be switched off, made to skip replica sessions, or
 * dropped; the columns of the extension's tables must not be added,
 * dropped or retyped (the C code writes their rows column by column, and
 * the log's events must not be rewritten), nor its relations renamed or
 * moved (the C code finds them by name); no guarded table may join an
 * inheritance tree, turn unlogged, or get a rule.
 * This holds for the superuser too, who can still take the guard itself
 * away (ALTER EVENT TRIGGER ... DISABLE): it stops mistakes and casual
 * tampering, not a determined superuser.  Extension scripts pass.  Commands
 * on relations the user does not own are left to PostgreSQL's own refusal.
 */
Datum
ledger_guard_ddl(PG_FUNCTION_ARGS)
{
	Node	   *stmt;
	Oid			extension;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "ledger.guard_triggers() must be called as an event trigger");
	extension = get_extension_oid("ledger_cqrs", true);
	/* our own install and upgrade scripts pass; another extension's do not */
	if (!OidIsValid(extension) || (creating_extension && CurrentExtensionObject == extension))
		PG_RETURN_NULL();
	stmt = ((EventTriggerData *) fcinfo->context)->parsetree;

	if (IsA(stmt, AlterTableStmt))
	{
		AlterTableStmt *alter = (AlterTableStmt *) stmt;
		Oid			relid = RangeVarGetRelid(alter->relation, NoLock, true);

		if (!OidIsValid(relid) || !may_alter(relid))
			PG_RETURN_NULL();
		foreach(lc, alter->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
			char	   *trigger = NULL;

			switch (cmd->subtype)
			{
				case AT_EnableTrig:
				case AT_EnableReplicaTrig:
				case AT_DisableTrig:
					trigger = guard_trigger(relid, cmd->name, extension);
					break;
				case AT_EnableTrigAll:
				case AT_EnableTrigUser:
				case AT_DisableTrigAll:
				case AT_DisableTrigUser:
					trigger = guard_trigger(relid, NULL, extension);
					break;
				case AT_AddInherit:
					refuse_guarded(relid, extension, "INHERIT", HIERARCHY_DETAIL);
					refuse_guarded(RangeVarGetRelid((RangeVar *) cmd->def, NoLock, true),
								   extension, "inheriting from it", HIERARCHY_DETAIL);
					break;
				case AT_AttachPartition:
					refuse_guarded(RangeVarGetRelid(((PartitionCmd *) cmd->def)->name, NoLock, true),
								   extension, "ATTACH PARTITION", HIERARCHY_DETAIL);
					break;
				case AT_SetUnLogged:
					refuse_guarded(relid, extension, "SET UNLOGGED",
								   "A crash would empty it, and replicas would not receive its rows.");
					break;
				case AT_AddColumn:
				case AT_AlterColumnType:
				case AT_DropColumn:
					if (relid == ledger_catalog()->events && cmd->subtype != AT_AddColumn)
						ereport(ERROR,
								(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
								 errmsg("ledger.events is append-only: %s is not allowed",
										cmd->subtype == AT_DropColumn ? "DROP COLUMN" : "ALTER COLUMN TYPE"),
								 errdetail("It would rewrite appended events.")));
					if (getExtensionOfObject(RelationRelationId, relid) == extension)
						ereport(ERROR,
								(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
								 errmsg("%s belongs to ledger_cqrs: %s is not allowed", relation_name(relid),
										cmd->subtype == AT_AddColumn ? "ADD COLUMN" :
										cmd->subtype == AT_DropColumn ? "DROP COLUMN" : "ALTER COLUMN TYPE"),
								 errdetail("The extension writes its rows column by column, as its install script made them.")));
					refuse_guarded(relid, extension,
								   cmd->subtype == AT_AddColumn ? "ADD COLUMN" :
								   cmd->subtype == AT_DropColumn ? "DROP COLUMN" : "ALTER COLUMN TYPE",
								   "A projection's table has the columns its query defines; its folds, rebuilds and snapshots write those. Drop the projection and create it again instead.");
					break;
				default:
					break;
			}
			if (trigger != NULL)
				refuse_trigger_change(relid, trigger,
									  cmd->subtype == AT_DisableTrig ||
									  cmd->subtype == AT_DisableTrigAll ||
									  cmd->subtype == AT_DisableTrigUser ? "disabled" :
									  cmd->subtype == AT_EnableReplicaTrig ? "limited to replica sessions" :
									  "limited to origin sessions");
		}
	}
	else if (IsA(stmt, CreateStmt) || IsA(stmt, CreateForeignTableStmt))
	{
		/* CREATE [FOREIGN] TABLE ... INHERITS (guarded) or PARTITION OF (guarded) */
		foreach(lc, ((CreateStmt *) stmt)->inhRelations)
			refuse_guarded(RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true),
						   extension, "inheriting from it", HIERARCHY_DETAIL);
	}
	else if (IsA(stmt, RenameStmt) || IsA(stmt, AlterObjectSchemaStmt))
	{
		/*
		 * The C code and the install script name the extension's relations
		 * and columns: none is renamed or moved.  A projection's table may
		 * be (its fold fails, naming the projection, until it is back), but
		 * its columns are the query's and keep their names.
		 */
		bool		rename = IsA(stmt, RenameStmt);
		ObjectType	type = rename ? ((RenameStmt *) stmt)->renameType : OBJECT_TABLE;
		RangeVar   *rv = rename ? ((RenameStmt *) stmt)->relation :
			((AlterObjectSchemaStmt *) stmt)->relation;
		Oid			relid = rv != NULL ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;

		if (OidIsValid(relid) && may_alter(relid))
		{
			if (type == OBJECT_COLUMN)
				refuse_guarded(relid, extension, "RENAME COLUMN",
							   "The extension writes its columns by the names they were created with.");
			if (extension_relation(relid, extension))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("%s belongs to ledger_cqrs: %s is not allowed", relation_name(relid),
								!rename ? "SET SCHEMA" :
								type == OBJECT_TABCONSTRAINT ? "RENAME CONSTRAINT" : "RENAME"),
						 errdetail("The extension finds its relations by their names in schema ledger.")));
		}
	}
	else if (IsA(stmt, RuleStmt))
	{
		Oid			relid = RangeVarGetRelid(((RuleStmt *) stmt)->relation, NoLock, true);

		if (OidIsValid(relid) && may_alter(relid))
			refuse_guarded(relid, extension, "CREATE RULE",
						   "A rule rewrites statements before the guards see them: DO INSTEAD NOTHING would make a refused write a silent no-op.");
	}
	else if (IsA(stmt, CreateTrigStmt) && ((CreateTrigStmt *) stmt)->replace)
	{
		/* CREATE OR REPLACE TRIGGER: a drop by another name */
		CreateTrigStmt *ct = (CreateTrigStmt *) stmt;
		Oid			relid = RangeVarGetRelid(ct->relation, NoLock, true);

		if (OidIsValid(relid) && may_alter(relid) &&
			guard_trigger(relid, ct->trigname, extension) != NULL)
			refuse_trigger_change(relid, ct->trigname, "replaced");
	}
	else if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_TRIGGER)
	{
		foreach(lc, ((DropStmt *) stmt)->objects)
		{
			List	   *names = (List *) lfirst(lc);
			List	   *relnames = list_truncate(list_copy(names), list_length(names) - 1);
			char	   *trigger = strVal(llast(names));
			Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(relnames), NoLock, true);

			if (OidIsValid(relid) && may_alter(relid) &&
				guard_trigger(relid, trigger, extension) != NULL)
				refuse_trigger_change(relid, trigger, "dropped");
		}
	}
	PG_RETURN_NULL();
}
