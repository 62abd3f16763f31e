/*-------------------------------------------------------------------------
 *
 * ledger.h
 *	  The double-entry ledger domain: legs, postings, currencies.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEDGER_LEDGER_H
#define LEDGER_LEDGER_H

#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/* Account flags, as bits. */
#define LEDGER_FLAG_DEBITS_LE_CREDITS	0x01	/* debits_must_not_exceed_credits */
#define LEDGER_FLAG_CREDITS_LE_DEBITS	0x02	/* credits_must_not_exceed_debits */

/* Most legs one posting may have (each takes a lock or two). */
#define LEDGER_MAX_LEGS			1000

/* Amounts and totals stay below 10^(38 - scale): 38 significant digits. */
#define LEDGER_MAX_DIGITS		38
#define LEDGER_MAX_SCALE		18

/* Longest account id or transfer id: the stream name minus its prefix. */
#define LEDGER_MAX_ID_BYTES		200

typedef struct LedgerLeg
{
	text	   *account;
	text	   *currency;
	bool		debit;
	Numeric		amount;			/* exact, at the currency's scale */
} LedgerLeg;

/* posting.c */
extern int	ledger_snapshot_interval;
extern void ledger_posting_init(void);
extern int	ledger_currency_scale(text *code);
extern Numeric ledger_check_amount(Numeric amount, text *currency, int scale,
								   const char *where);
extern int64 ledger_post(text *transfer_id, LedgerLeg *legs, int nlegs,
						 Jsonb *metadata);
extern void ledger_check_id(text *id, const char *what);
extern Jsonb *ledger_empty_object(void);
extern int	ledger_decode_flags(Datum flags_array);
extern uint64 ledger_balance_hash(text *account, text *currency);
extern void ledger_lock_hash(uint64 h, uint16 kind, LOCKMODE mode);
extern bool ledger_text_eq(text *a, text *b);

#endif							/* LEDGER_LEDGER_H */
