/*-------------------------------------------------------------------------
 *
 * readlog.h
 *	  Commit-safe reading of the event log, shared by read_all and the
 *	  consumers inside the extension (async projections, fills).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEDGER_READLOG_H
#define LEDGER_READLOG_H

#include "access/transam.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

/* Called per event; return false to stop the scan. */
typedef bool (*ledger_event_callback) (TupleTableSlot *slot, void *arg);

extern FullTransactionId ledger_widen_xid(TransactionId xid);
extern FullTransactionId ledger_log_horizon(Snapshot snapshot);
extern FullTransactionId ledger_tx_order_of(Relation events, int64 position,
											Snapshot snapshot);
extern int64 ledger_scan_log(Relation events, Snapshot snapshot,
							 FullTransactionId after_order, int64 after_position,
							 FullTransactionId horizon, int64 max_count,
							 ledger_event_callback callback, void *arg);

#endif							/* LEDGER_READLOG_H */
