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
 * publisher's or the dump's transaction ids mean nothing here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "replication/logicalworker.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"

PG_FUNCTION_INFO_V1(ledger_events_guard);

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
	ledger_lock_stream(DatumGetTextPP(stream));
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
