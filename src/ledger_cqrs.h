/*-------------------------------------------------------------------------
 *
 * ledger_cqrs.h
 *	  Shared declarations of the ledger_cqrs extension: the cached catalog
 *	  of the extension's relations, the event log's column layout and the
 *	  append path used by every command.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEDGER_CQRS_H
#define LEDGER_CQRS_H

#include "postgres.h"

#include "access/genam.h"
#include "access/htup.h"
#include "access/transam.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "executor/tuptable.h"
#include "storage/itemptr.h"
#include "storage/lockdefs.h"

/* Columns of ledger.events, in table order. */
#define Anum_events_position	1
#define Anum_events_stream		2
#define Anum_events_version		3
#define Anum_events_type		4
#define Anum_events_data		5
#define Anum_events_metadata	6
#define Anum_events_recorded_at 7
#define Anum_events_tx_order	8
#define Natts_events			8

/* Longest stream or event type name, in bytes. */
#define LEDGER_MAX_NAME_BYTES	255

/*
 * field4 of the advisory lock tags the extension takes.  Ordinary advisory
 * locks use 1 (one int8 key) and 2 (two int4 keys), so these never collide
 * with an application's pg_advisory_lock() calls.
 */
#define LEDGER_LOCK_STREAM		0x4C01
#define LEDGER_LOCK_BALANCE		0x4C02
#define LEDGER_LOCK_SNAPSHOT	0x4C03
#define LEDGER_LOCK_PROJECTOR	0x4C04	/* held for life by a database's projector */
#define LEDGER_LOCK_REBUILD		0x4C05	/* held by rebuild_projection: state 'rebuilding' */
#define LEDGER_LOCK_STOPPING	0x4C06	/* held by stop_projector() until it commits */
#define LEDGER_LOCK_STARTING	0x4C07	/* held by an appender that will start a projector */

/* OIDs of the extension's relations, looked up once per backend. */
typedef struct LedgerCatalog
{
	Oid			schema;
	Oid			events;
	Oid			events_pkey;		/* (position) */
	Oid			events_stream_idx;	/* (stream, version) */
	Oid			events_order_idx;	/* (tx_order, position) */
	Oid			events_seq;
	Oid			currencies;
	Oid			currencies_pkey;
	Oid			accounts;
	Oid			accounts_pkey;
	Oid			balances;
	Oid			balances_pkey;
	Oid			account_entries;
	Oid			balance_snapshots;
	Oid			stream_snapshots;
	Oid			stream_snapshots_pkey;	/* (stream, version) */
	Oid			projections;
} LedgerCatalog;

/* catalog.c */
extern const LedgerCatalog *ledger_catalog(void);
extern void ledger_catalog_init(void);
extern HeapTuple ledger_form_row(Relation rel, const Oid *types, int natts,
								 Datum *values, bool *nulls);
extern void ledger_insert_tuple(Relation rel, HeapTuple tuple);
extern bool ledger_update_tuple(Relation rel, ItemPointer otid, HeapTuple tuple);
extern void ledger_lock_events(LOCKMODE mode);
extern ErrorData *ledger_try_in_subxact(void (*fn) (void *arg), void *arg);
extern bool ledger_fetch_by_text_key(Relation rel, Oid indexoid, int nkeys,
									 text **keys, Snapshot snapshot,
									 TupleTableSlot *slot);
extern bool ledger_fetch_hinted(Relation rel, Oid indexoid, int nkeys,
								text **keys, Snapshot snapshot,
								TupleTableSlot *slot, ItemPointer hint,
								BlockNumber nblocks);
extern text *ledger_prefixed_name(const char *prefix, text *name);

/* ledger_cqrs.c */
extern bool ledger_restoring;
extern int	ledger_maintenance_depth;

/* eventlog.c */
typedef struct LedgerNewEvent
{
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;
} LedgerNewEvent;

typedef struct LedgerStreamHead
{
	int64		version;		/* 0 when the stream has no events */
	FullTransactionId tx_order; /* of the last event, if any */
} LedgerStreamHead;

extern void ledger_check_name(text *name, const char *what);
extern void ledger_lock_stream(text *stream);
extern IndexScanDesc ledger_begin_stream_scan(Relation events, text *stream,
											  int64 from_version, Snapshot snapshot);
extern void ledger_end_stream_scan(IndexScanDesc scan);
extern LedgerStreamHead ledger_stream_head(Relation events, text *stream,
										   Snapshot snapshot);
extern FullTransactionId ledger_next_tx_order(LedgerStreamHead head);
/* what an append did: the last event's position and the append time */
typedef struct LedgerAppended
{
	int64		version;
	int64		position;
	TimestampTz recorded_at;
} LedgerAppended;

extern LedgerAppended ledger_append_to_stream(text *stream, int64 expected_version,
											  LedgerNewEvent *events, int nevents);
extern LedgerAppended ledger_append_at_head(Relation rel, text *stream, LedgerStreamHead head,
											LedgerNewEvent *events, int nevents);

#define LEDGER_ANY_VERSION	(-1)

#endif							/* LEDGER_CQRS_H */
