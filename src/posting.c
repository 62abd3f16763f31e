/*-------------------------------------------------------------------------
 *
 * posting.c
 *	  Postings: the shared core of ledger.transfer and ledger.post_entry.
 *
 * A posting appends one TransferPosted event and folds it into the read
 * models ledger.balances and ledger.account_entries in the same transaction,
 * without SPI: rows are found by index probes and written with direct heap
 * and index calls.  Balance and account rows are looked for first at the
 * heap TID the index gave for them last time in this backend (see
 * ledger_fetch_hinted), which saves the index descents inside the balance
 * locks' critical section.
 *
 * Locking, in this order, so that crossing transfers cannot deadlock:
 *
 *	1. RowExclusiveLock on ledger.events, before anything is read: a rebuild
 *	   of the built-in read models takes a conflicting lock there and so
 *	   never runs between our reads and our writes.  Then the stream lock of
 *	   "transfer:<id>", under which the posting looks for a twin that
 *	   committed meanwhile: each id has its own stream, so this lock is only
 *	   ever shared with twins, and taking it first keeps it (and the event's
 *	   construction) out of the balance locks' critical section.
 *	2. For each account that gets its first balance row in some currency, a
 *	   ShareLock on the account's stream lock ("account:<id>").  close_account
 *	   appends to that stream under ExclusiveLock, so an account cannot be
 *	   closed while a posting opens a new currency on it.
 *	3. An ExclusiveLock per (account, currency) balance, sorted by lock tag.
 *	   This is the only lock two postings on the same account contend for;
 *	   it guards the balance row (and its creation), so flags hold under any
 *	   interleaving.  No tuple lock is taken: nothing else updates the row.
 *
 * The position is allocated only after step 3, so within one account and
 * currency, positions increase in the order the balance lock was held: the
 * running balance_after agrees with "balance as of position".
 *
 * Idempotency: transfer_id names the stream "transfer:<id>".  Its
 * TransferPosted (the stream's first event unless a user appended others
 * there first) is compared with the request under the stream lock, so two
 * racing twins never both post, and a retry returns the original position.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "ledger_cqrs.h"
#include "ledger.h"

/* Columns of ledger.balances and ledger.account_entries. */
#define Natts_balances			7
#define Anum_balances_debits	3
#define Anum_balances_credits	4
#define Anum_balances_postings	6
#define Natts_entries			9
#define Natts_snapshots			8

static const Oid balances_types[Natts_balances] = {
	TEXTOID, TEXTOID, NUMERICOID, NUMERICOID, NUMERICOID, INT8OID, INT8OID
};
static const Oid entries_types[Natts_entries] = {
	TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, NUMERICOID, NUMERICOID, TIMESTAMPTZOID, INT4OID
};
static const Oid snapshots_types[Natts_snapshots] = {
	TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, NUMERICOID, NUMERICOID, NUMERICOID
};

/* Columns of ledger.accounts and ledger.currencies we read. */
#define Anum_accounts_flags		2
#define Anum_accounts_status	3
#define Anum_currencies_scale	2

/*
 * One balance a posting touches, with the state of its row: the (account,
 * currency) of its first leg there, and the sum of its legs' amounts per
 * side (a posting may name the same balance in several legs).
 */
typedef struct PostSlot
{
	LedgerLeg  *leg;
	int			nlegs;			/* legs on this balance */
	int			made;			/* its index before slots are sorted */
	Numeric		add_debits;		/* their debits, NULL if none */
	Numeric		add_credits;	/* their credits, NULL if none */
	uint64		lockhash;
	bool		exists;			/* the balance row exists */
	ItemPointerData hint;		/* its TID as the index gave it, if known */
	ItemPointerData tid;
	Numeric		debits;
	Numeric		credits;
	int64		postings;
	Numeric		new_debits;
	Numeric		new_credits;
} PostSlot;

/* Backend cache of registered currencies: code -> scale. */
typedef struct CurrencyEntry
{
	char		code[16];
	int			scale;
} CurrencyEntry;

int			ledger_snapshot_interval = 1000;

static HTAB *currency_cache = NULL;
static Oid	currency_cache_relid = InvalidOid;	/* ledger.currencies */

/*
 * Balance rows this backend has seen committed-or-own and existing, keyed by
 * their lock hash, with the heap TID their index entry holds (a hint for
 * ledger_fetch_hinted).  A posting on a known row needs no pre-read to
 * decide whether it opens a new currency on the account.  Forgotten on
 * abort (our own insert may have been rolled back) and on any relcache
 * invalidation of ledger.balances (a rebuild).
 */
typedef struct RowHint
{
	uint64		hash;
	ItemPointerData root;
} RowHint;

static HTAB *known_balances = NULL;
static Oid	known_balances_relid = InvalidOid;
#define KNOWN_BALANCES_MAX 100000

/* Likewise TID hints for ledger.accounts rows, keyed by a hash of the id. */
static HTAB *account_hints = NULL;
static Oid	account_hints_relid = InvalidOid;
#define ACCOUNT_HINTS_MAX 100000

static Numeric amount_bounds[LEDGER_MAX_SCALE + 1];
static Numeric numeric_zero = NULL;

static void
forget_known_balances(void)
{
	if (known_balances != NULL)
	{
		hash_destroy(known_balances);
		known_balances = NULL;
	}
}

/*
 * Caches filled from rows our own transaction wrote must not outlive their
 * rollback, whole or to a savepoint; simplest is to forget them then.
 */
static void
forget_own_rows(void)
{
	if (currency_cache != NULL)
	{
		hash_destroy(currency_cache);
		currency_cache = NULL;
	}
	forget_known_balances();
}

static void
posting_xact_callback(XactEvent event, void *arg)
{
	/*
	 * After PREPARE TRANSACTION our rows belong to the prepared transaction,
	 * whose ROLLBACK PREPARED fires no abort here: forget them then too.
	 */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		forget_own_rows();
}

static void
posting_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_own_rows();
}

static void
posting_inval_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == known_balances_relid)
		forget_known_balances();
	if (account_hints != NULL &&
		(relid == InvalidOid || relid == account_hints_relid))
	{
		hash_destroy(account_hints);
		account_hints = NULL;
	}
	if (currency_cache != NULL &&
		(relid == InvalidOid || relid == currency_cache_relid))
	{
		hash_destroy(currency_cache);
		currency_cache = NULL;
	}
}

void
ledger_posting_init(void)
{
	RegisterXactCallback(posting_xact_callback, NULL);
	RegisterSubXactCallback(posting_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(posting_inval_callback, (Datum) 0);
}

/*
 * ledger_empty_object -- the jsonb value {}, built once.
 */
Jsonb *
ledger_empty_object(void)
{
	static Jsonb *empty = NULL;

	if (empty == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
		MemoryContextSwitchTo(old);
	}
	return empty;
}

static int
numeric_cmp_(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static Numeric
numeric_add_(Numeric a, Numeric b)
{
	return DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(a),
											   NumericGetDatum(b)));
}

static Numeric
numeric_sub_(Numeric a, Numeric b)
{
	return DatumGetNumeric(DirectFunctionCall2(numeric_sub, NumericGetDatum(a),
											   NumericGetDatum(b)));
}

/* a numeric for an error message: at most 60 characters of it */
static char *
numeric_str(Numeric n)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));

	if (strlen(s) > 60)
		return psprintf("%.40s... (%zu digits)", s, strlen(s));
	return s;
}

static Numeric
zero(void)
{
	if (numeric_zero == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		numeric_zero = int64_to_numeric(0);
		MemoryContextSwitchTo(old);
	}
	return numeric_zero;
}

/* 10^(LEDGER_MAX_DIGITS - scale): the first amount that is out of range */
static Numeric
amount_bound(int scale)
{
	if (amount_bounds[scale] == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		char		buf[LEDGER_MAX_DIGITS + 2];
		int			digits = LEDGER_MAX_DIGITS - scale;

		buf[0] = '1';
		memset(buf + 1, '0', digits);
		buf[digits + 1] = '\0';
		amount_bounds[scale] = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																   CStringGetDatum(buf),
																   ObjectIdGetDatum(InvalidOid),
																   Int32GetDatum(-1)));
		MemoryContextSwitchTo(old);
	}
	return amount_bounds[scale];
}

/*
 * ledger_check_id -- an account or transfer id: non-empty and short enough
 * to name a stream.  NULL is checked by the caller.
 */
void
ledger_check_id(text *id, const char *what)
{
	int			len = VARSIZE_ANY_EXHDR(id);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > LEDGER_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("It has %d bytes; the limit is %d.", len, LEDGER_MAX_ID_BYTES)));
}

/*
 * ledger_currency_scale -- the scale of a registered currency, or -1.
 *
 * Registered currencies never change, so positive answers are cached for
 * the backend's life (forgotten on abort and on relcache invalidation).
 */
int
ledger_currency_scale(text *code)
{
	const LedgerCatalog *c = ledger_catalog();
	char	   *key;
	CurrencyEntry *entry;
	bool		found;
	Relation	rel;
	TupleTableSlot *slot;
	Snapshot	snap;
	int			scale = -1;

	if (VARSIZE_ANY_EXHDR(code) >= (int) sizeof(entry->code) || VARSIZE_ANY_EXHDR(code) == 0)
		return -1;
	key = text_to_cstring(code);

	if (currency_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(entry->code);
		ctl.entrysize = sizeof(CurrencyEntry);
		currency_cache = hash_create("ledger_cqrs currencies", 32, &ctl,
									 HASH_ELEM | HASH_STRINGS);
		currency_cache_relid = c->currencies;
	}
	entry = hash_search(currency_cache, key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->scale;

	rel = table_open(c->currencies, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (ledger_fetch_by_text_key(rel, c->currencies_pkey, 1, &code, snap, slot))
	{
		bool		isnull;

		scale = DatumGetInt32(slot_getattr(slot, Anum_currencies_scale, &isnull));
		/* table_open may have processed an invalidation that dropped it */
		if (currency_cache != NULL)
		{
			entry = hash_search(currency_cache, key, HASH_ENTER, &found);
			entry->scale = scale;
		}
	}
	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return scale;
}

/*
 * ledger_check_amount -- validate an amount of currency: finite, > 0, no
 * more decimals than scale, below the range bound.  Returns it written at
 * exactly scale decimals.
 */
Numeric
ledger_check_amount(Numeric amount, text *currency, int scale, const char *where)
{
	Numeric		rounded;

	if (numeric_is_nan(amount)
#if PG_VERSION_NUM >= 140000
		|| numeric_is_inf(amount)
#endif
		)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%samount must be a finite number, not %s", where, numeric_str(amount))));
	if (numeric_cmp_(amount, zero()) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%samount must be greater than zero, not %s", where, numeric_str(amount))));
	rounded = DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(amount),
												  Int32GetDatum(scale)));
	if (numeric_cmp_(rounded, amount) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%samount %s has more decimal places than currency %s allows",
						where, numeric_str(amount), text_to_cstring(currency)),
				 errdetail("%s has scale %d.", text_to_cstring(currency), scale)));
	if (numeric_cmp_(rounded, amount_bound(scale)) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%samount %s is out of range for currency %s",
						where, numeric_str(amount), text_to_cstring(currency)),
				 errdetail("Amounts and totals must be below %s.", numeric_str(amount_bound(scale)))));
	return rounded;
}

/*
 * ledger_decode_flags -- the flag bits of an accounts.flags array.
 */
int
ledger_decode_flags(Datum flags_array)
{
	ArrayType  *arr = DatumGetArrayTypeP(flags_array);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int			bits = 0;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *f = TextDatumGetCString(elems[i]);

		if (strcmp(f, "debits_must_not_exceed_credits") == 0)
			bits |= LEDGER_FLAG_DEBITS_LE_CREDITS;
		else if (strcmp(f, "credits_must_not_exceed_debits") == 0)
			bits |= LEDGER_FLAG_CREDITS_LE_DEBITS;
	}
	return bits;
}

/* byte order of two texts */
static int
text_cmp_bytes(text *a, text *b)
{
	int			la = VARSIZE_ANY_EXHDR(a);
	int			lb = VARSIZE_ANY_EXHDR(b);
	int			r = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(la, lb));

	return r != 0 ? r : (la > lb) - (la < lb);
}

static int
leg_cmp(const void *pa, const void *pb)
{
	const LedgerLeg *a = (const LedgerLeg *) pa;
	const LedgerLeg *b = (const LedgerLeg *) pb;
	int			r = text_cmp_bytes(a->account, b->account);

	if (r == 0)
		r = text_cmp_bytes(a->currency, b->currency);
	if (r == 0)
		r = (int) a->debit - (int) b->debit;
	if (r == 0)
		r = numeric_cmp_(a->amount, b->amount);
	return r;
}

static int
u64_cmp(const void *pa, const void *pb)
{
	uint64		a = *(const uint64 *) pa;
	uint64		b = *(const uint64 *) pb;

	return (a > b) - (a < b);
}

static int
slot_cmp(const void *pa, const void *pb)
{
	const PostSlot *a = (const PostSlot *) pa;
	const PostSlot *b = (const PostSlot *) pb;

	return (a->lockhash > b->lockhash) - (a->lockhash < b->lockhash);
}

/* are two texts byte-equal? */
bool
ledger_text_eq(text *a, text *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/* 64-bit hash of the balance (account, currency): its lock key */
uint64
ledger_balance_hash(text *account, text *currency)
{
	int			la = VARSIZE_ANY_EXHDR(account);
	int			lc = VARSIZE_ANY_EXHDR(currency);
	char	   *buf = palloc(la + lc + 1);
	uint64		h;

	memcpy(buf, VARDATA_ANY(account), la);
	buf[la] = '\0';
	memcpy(buf + la + 1, VARDATA_ANY(currency), lc);
	h = hash_bytes_extended((unsigned char *) buf, la + lc + 1, 0);
	pfree(buf);
	return h;
}

/* take the advisory lock (h, kind) until end of transaction */
void
ledger_lock_hash(uint64 h, uint16 kind, LOCKMODE mode)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h, kind);
	(void) LockAcquire(&tag, mode, false, false);
}

/*
 * legs_from_event -- the legs of a stored TransferPosted event, for the
 * idempotency comparison.  The event was validated when it was appended.
 */
static LedgerLeg *
legs_from_event(Jsonb *data, int *nlegs)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&data->root, "legs", 4, NULL);
	JsonbContainer *arr;
	LedgerLeg  *legs;
	int			n;
	int			i;

	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
	{
		*nlegs = 0;
		return NULL;
	}
	arr = v->val.binary.data;
	n = JsonContainerSize(arr);
	legs = palloc0(sizeof(LedgerLeg) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		JsonbValue *leg = getIthJsonbValueFromContainer(arr, i);
		JsonbValue *f;

		if (leg->type != jbvBinary || !JsonContainerIsObject(leg->val.binary.data))
			continue;
		f = getKeyJsonValueFromContainer(leg->val.binary.data, "account", 7, NULL);
		legs[i].account = (f && f->type == jbvString) ?
			cstring_to_text_with_len(f->val.string.val, f->val.string.len) : cstring_to_text("");
		f = getKeyJsonValueFromContainer(leg->val.binary.data, "currency", 8, NULL);
		legs[i].currency = (f && f->type == jbvString) ?
			cstring_to_text_with_len(f->val.string.val, f->val.string.len) : cstring_to_text("");
		f = getKeyJsonValueFromContainer(leg->val.binary.data, "side", 4, NULL);
		legs[i].debit = (f && f->type == jbvString && f->val.string.len == 5 &&
						 memcmp(f->val.string.val, "debit", 5) == 0);
		f = getKeyJsonValueFromContainer(leg->val.binary.data, "amount", 6, NULL);
		legs[i].amount = (f && f->type == jbvNumeric) ? f->val.numeric : zero();
	}
	*nlegs = n;
	return legs;
}

/* same legs, in any order? */
static bool
same_legs(LedgerLeg *a, int na, LedgerLeg *b, int nb)
{
	LedgerLeg  *sa;
	LedgerLeg  *sb;
	int			i;

	if (na != nb)
		return false;
	sa = palloc(sizeof(LedgerLeg) * na);
	sb = palloc(sizeof(LedgerLeg) * nb);
	memcpy(sa, a, sizeof(LedgerLeg) * na);
	memcpy(sb, b, sizeof(LedgerLeg) * nb);
	qsort(sa, na, sizeof(LedgerLeg), leg_cmp);
	qsort(sb, nb, sizeof(LedgerLeg), leg_cmp);
	for (i = 0; i < na; i++)
		if (leg_cmp(&sa[i], &sb[i]) != 0)
			return false;
	return true;
}

/*
 * transfer_twin -- is the event in slot this id's TransferPosted?  If so,
 * return true with its position, or raise 23505 when its legs differ.
 */
static bool
transfer_twin(TupleTableSlot *slot, text *transfer_id, LedgerLeg *legs, int nlegs,
			  int64 *position)
{
	bool		isnull;
	text	   *type = DatumGetTextPP(slot_getattr(slot, Anum_events_type, &isnull));
	int64		pos;
	Jsonb	   *data;
	int			nold;
	LedgerLeg  *old;

	if (VARSIZE_ANY_EXHDR(type) != 14 || memcmp(VARDATA_ANY(type), "TransferPosted", 14) != 0)
		return false;
	pos = DatumGetInt64(slot_getattr(slot, Anum_events_position, &isnull));
	data = DatumGetJsonbP(slot_getattr(slot, Anum_events_data, &isnull));
	old = legs_from_event(data, &nold);
	if (!same_legs(old, nold, legs, nlegs))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("transfer \"%s\" already exists with different legs",
						text_to_cstring(transfer_id)),
				 errdetail("It was posted at position " INT64_FORMAT ".", pos),
				 errhint("A transfer_id is an idempotency key: reuse it only to retry the very same posting.")));
	*position = pos;
	return true;
}

/*
 * existing_transfer -- if the stream "transfer:<id>" already holds this
 * id's TransferPosted, return true with its position when it is this very
 * posting, and raise 23505 when its legs differ.  Otherwise return false
 * and leave in *head where the posting goes: after any events users
 * appended to the stream themselves (ledger.append takes any stream name).
 */
static bool
existing_transfer(Relation events, text *stream, text *transfer_id,
				  LedgerLeg *legs, int nlegs, Snapshot snap, int64 *position,
				  LedgerStreamHead *head)
{
	const LedgerCatalog *c = ledger_catalog();
	TupleTableSlot *slot = table_slot_create(events, NULL);
	bool		twin = false;

	head->version = 0;
	head->tx_order = InvalidFullTransactionId;
	/* the common cases: a new stream, or the posting at version 1 */
	if (ledger_fetch_by_text_key(events, c->events_stream_idx, 1, &stream, snap, slot) &&
		!(twin = transfer_twin(slot, transfer_id, legs, nlegs, position)))
	{
		/* users' events come first: look through the rest of the stream */
		IndexScanDesc scan = ledger_begin_stream_scan(events, stream, 2, snap);
		bool		isnull;

		head->version = 1;
		head->tx_order = DatumGetFullTransactionId(slot_getattr(slot, Anum_events_tx_order,
																&isnull));
		while (!twin && index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			twin = transfer_twin(slot, transfer_id, legs, nlegs, position);
			head->version = DatumGetInt64(slot_getattr(slot, Anum_events_version, &isnull));
			head->tx_order = DatumGetFullTransactionId(slot_getattr(slot, Anum_events_tx_order,
																	&isnull));
		}
		ledger_end_stream_scan(scan);
	}
	ExecDropSingleTupleTableSlot(slot);
	return twin;
}

/*
 * transfer_event_data -- {"transfer_id", "legs": [...], "metadata"}.
 */
static Jsonb *
transfer_event_data(text *transfer_id, LedgerLeg *legs, int nlegs, Jsonb *metadata)
{
	JsonbParseState *state = NULL;
	JsonbValue	k;
	JsonbValue	v;
	int			i;

#define PUSH_KEY(s) \
	do { k.type = jbvString; k.val.string.val = (s); k.val.string.len = strlen(s); \
		 pushJsonbValue(&state, WJB_KEY, &k); } while (0)
#define PUSH_TEXT(seq, t) \
	do { v.type = jbvString; v.val.string.val = VARDATA_ANY(t); \
		 v.val.string.len = VARSIZE_ANY_EXHDR(t); pushJsonbValue(&state, seq, &v); } while (0)

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	PUSH_KEY("transfer_id");
	PUSH_TEXT(WJB_VALUE, transfer_id);
	PUSH_KEY("legs");
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < nlegs; i++)
	{
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		PUSH_KEY("account");
		PUSH_TEXT(WJB_VALUE, legs[i].account);
		PUSH_KEY("side");
		v.type = jbvString;
		v.val.string.val = legs[i].debit ? "debit" : "credit";
		v.val.string.len = legs[i].debit ? 5 : 6;
		pushJsonbValue(&state, WJB_VALUE, &v);
		PUSH_KEY("amount");
		v.type = jbvNumeric;
		v.val.numeric = legs[i].amount;
		pushJsonbValue(&state, WJB_VALUE, &v);
		PUSH_KEY("currency");
		PUSH_TEXT(WJB_VALUE, legs[i].currency);
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	PUSH_KEY("metadata");
	v.type = jbvBinary;
	v.val.binary.data = &metadata->root;
	v.val.binary.len = VARSIZE(metadata) - VARHDRSZ;
	pushJsonbValue(&state, WJB_VALUE, &v);
#undef PUSH_KEY
#undef PUSH_TEXT
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* the known balance row under lock hash h: true, with its TID hint */
static bool
balance_known(uint64 h, ItemPointer root)
{
	RowHint    *e;

	if (known_balances == NULL)
		return false;
	e = hash_search(known_balances, &h, HASH_FIND, NULL);
	if (e == NULL)
		return false;
	*root = e->root;
	return true;
}

/* enter (or refresh) a row hint in *table, created on first use */
static void
note_hint(HTAB **table, Oid *relid, Oid rel, long max, const char *name,
		  uint64 h, ItemPointer root)
{
	RowHint    *e;

	if (*table == NULL || hash_get_num_entries(*table) >= max)
	{
		HASHCTL		ctl;

		if (*table != NULL)
			hash_destroy(*table);
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(RowHint);
		*table = hash_create(name, 1024, &ctl, HASH_ELEM | HASH_BLOBS);
		*relid = rel;
	}
	e = hash_search(*table, &h, HASH_ENTER, NULL);
	e->root = *root;
}

/*
 * read_balance -- fill a slot from the balance row, if it exists.  With a
 * hint (the row's TID as last seen, or invalid), the row is looked for
 * there first, and the hint is updated.
 */
static void
read_balance(Relation balances, PostSlot *s, Snapshot snap, TupleTableSlot *tts,
			 ItemPointer hint, BlockNumber nblocks)
{
	const LedgerCatalog *c = ledger_catalog();
	text	   *keys[2] = {s->leg->account, s->leg->currency};
	bool		isnull;

	if (hint != NULL)
		s->exists = ledger_fetch_hinted(balances, c->balances_pkey, 2, keys, snap, tts,
										hint, nblocks);
	else
		s->exists = ledger_fetch_by_text_key(balances, c->balances_pkey, 2, keys, snap, tts);
	if (!s->exists)
	{
		/* 0 written at the currency's scale, like every other total */
		s->debits = s->credits =
			DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(zero()),
												Int32GetDatum(ledger_currency_scale(s->leg->currency))));
		s->postings = 0;
		return;
	}
	s->tid = tts->tts_tid;
	s->debits = DatumGetNumericCopy(slot_getattr(tts, Anum_balances_debits, &isnull));
	s->credits = DatumGetNumericCopy(slot_getattr(tts, Anum_balances_credits, &isnull));
	s->postings = DatumGetInt64(slot_getattr(tts, Anum_balances_postings, &isnull));
}

/*
 * check_unchanged_since_snapshot -- in REPEATABLE READ or SERIALIZABLE, the
 * balance row a posting is about to replace (tts, just read under a fresh
 * snapshot and the balance lock) must be the version the transaction's own
 * snapshot sees.  A row another transaction changed or created after that
 * snapshot raises 40001, as an UPDATE of it would: replacing it anyway
 * would leave this transaction seeing both the old version and its own new
 * one (two balance rows, a trial balance that does not balance).
 */
static void
check_unchanged_since_snapshot(Relation balances, TupleTableSlot *tts, PostSlot *s,
							   text *transfer_id)
{
	if (!IsolationUsesXactSnapshot())
		return;
	if (table_tuple_satisfies_snapshot(balances, tts, GetTransactionSnapshot()))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize posting \"%s\": the balance of account \"%s\" in %s changed after this transaction's snapshot was taken",
					text_to_cstring(transfer_id), text_to_cstring(s->leg->account),
					text_to_cstring(s->leg->currency)),
			 errdetail("A transaction that committed after this %s transaction began posted to that balance.",
					   IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
			 errhint("Retry the transaction.")));
}

/*
 * check_accounts -- every account exists and is open; returns nothing but
 * leaves the flag bits of each slot's account in flags[].  accounts is
 * open, tts a slot for it, nblocks the bound for its row hints.
 */
static void
check_accounts(Relation accounts, TupleTableSlot *tts, BlockNumber nblocks,
			   PostSlot *slots, int n, Snapshot snap, int *flags)
{
	const LedgerCatalog *c = ledger_catalog();
	int			i;

	for (i = 0; i < n; i++)
	{
		text	   *account = slots[i].leg->account;
		bool		isnull;
		text	   *status;
		uint64		h;
		RowHint    *e;
		ItemPointerData root;
		int			j;

		/* an account already seen in an earlier slot */
		for (j = 0; j < i; j++)
			if (text_cmp_bytes(slots[j].leg->account, account) == 0)
				break;
		if (j < i)
		{
			flags[i] = flags[j];
			continue;
		}

		h = hash_bytes_extended((unsigned char *) VARDATA_ANY(account),
								VARSIZE_ANY_EXHDR(account), 0);
		e = account_hints != NULL ? hash_search(account_hints, &h, HASH_FIND, NULL) : NULL;
		if (e != NULL)
			root = e->root;
		else
			ItemPointerSetInvalid(&root);
		if (!ledger_fetch_hinted(accounts, c->accounts_pkey, 1, &account, snap, tts,
								 &root, nblocks))
			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("account \"%s\" does not exist", text_to_cstring(account)),
					 errhint("Open it with ledger.open_account() first.")));
		note_hint(&account_hints, &account_hints_relid, c->accounts, ACCOUNT_HINTS_MAX,
				  "ledger_cqrs account hints", h, &root);
		status = DatumGetTextPP(slot_getattr(tts, Anum_accounts_status, &isnull));
		if (VARSIZE_ANY_EXHDR(status) != 4 || memcmp(VARDATA_ANY(status), "open", 4) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("account \"%s\" is closed", text_to_cstring(account)),
					 errdetail("A closed account takes no further postings.")));
		flags[i] = ledger_decode_flags(slot_getattr(tts, Anum_accounts_flags, &isnull));
	}
}

/* the range error for a total of slot s */
static void
total_out_of_range(PostSlot *s, const char *side, Numeric bound, text *transfer_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("posting \"%s\" would take the %s total of account \"%s\" in %s out of range",
					text_to_cstring(transfer_id), side,
					text_to_cstring(s->leg->account), text_to_cstring(s->leg->currency)),
			 errdetail("Totals must stay below %s.", numeric_str(bound))));
}

/*
 * apply_legs -- new totals for every slot; flags and range checked on the
 * totals after the whole posting.
 */
static void
apply_legs(PostSlot *slots, int n, int *flags, text *transfer_id)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		PostSlot   *s = &slots[i];
		int			scale = ledger_currency_scale(s->leg->currency);
		Numeric		bound = amount_bound(scale);
		Numeric		balance;

		s->new_debits = s->add_debits ? numeric_add_(s->debits, s->add_debits) : s->debits;
		s->new_credits = s->add_credits ? numeric_add_(s->credits, s->add_credits) : s->credits;
		if (numeric_cmp_(s->new_debits, bound) >= 0)
			total_out_of_range(s, "debit", bound, transfer_id);
		if (numeric_cmp_(s->new_credits, bound) >= 0)
			total_out_of_range(s, "credit", bound, transfer_id);

		balance = numeric_sub_(s->new_credits, s->new_debits);
		if ((flags[i] & LEDGER_FLAG_DEBITS_LE_CREDITS) &&
			numeric_cmp_(s->new_debits, s->new_credits) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("posting \"%s\" would overdraw account \"%s\" in %s",
							text_to_cstring(transfer_id), text_to_cstring(s->leg->account),
							text_to_cstring(s->leg->currency)),
					 errdetail("The account has flag debits_must_not_exceed_credits; its balance would be %s.",
							   numeric_str(balance))));
		if ((flags[i] & LEDGER_FLAG_CREDITS_LE_DEBITS) &&
			numeric_cmp_(s->new_credits, s->new_debits) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("posting \"%s\" would make credits exceed debits on account \"%s\" in %s",
							text_to_cstring(transfer_id), text_to_cstring(s->leg->account),
							text_to_cstring(s->leg->currency)),
					 errdetail("The account has flag credits_must_not_exceed_debits; its balance would be %s.",
							   numeric_str(balance))));
	}
}

/*
 * write_models -- the posting's rows: one ledger.balances row per slot, one
 * ledger.account_entries row per leg (legs[i] is leg i of the event and
 * lies on slots[leg_slot[i]]).  Every entry carries the balance after the
 * whole posting, so that balance_after agrees with balance_at(position) and
 * never shows a state in the middle of a posting that flags forbid.
 */
static void
write_models(Relation balances, Relation entries, PostSlot *slots, int n,
			 LedgerLeg *legs, int nlegs, const int *leg_slot,
			 text *transfer_id, int64 position, TimestampTz recorded_at)
{
	const LedgerCatalog *c = ledger_catalog();
	Relation	snapshots = NULL;
	Numeric    *balance = palloc(sizeof(Numeric) * n);
	int			i;

	for (i = 0; i < n; i++)
	{
		PostSlot   *s = &slots[i];
		Datum		bv[Natts_balances];
		bool		bn[Natts_balances] = {0};
		HeapTuple	tup;

		balance[i] = numeric_sub_(s->new_credits, s->new_debits);
		bv[0] = PointerGetDatum(s->leg->account);
		bv[1] = PointerGetDatum(s->leg->currency);
		bv[2] = NumericGetDatum(s->new_debits);
		bv[3] = NumericGetDatum(s->new_credits);
		bv[4] = NumericGetDatum(balance[i]);
		bv[5] = Int64GetDatum(s->postings + s->nlegs);
		bv[6] = Int64GetDatum(position);
		tup = ledger_form_row(balances, balances_types, Natts_balances, bv, bn);
		/* a new row, or a new index entry for it: its hint moves along */
		if (!s->exists)
			ledger_insert_tuple(balances, tup);
		if (!s->exists || ledger_update_tuple(balances, &s->tid, tup))
			note_hint(&known_balances, &known_balances_relid, c->balances,
					  KNOWN_BALANCES_MAX, "ledger_cqrs known balances",
					  s->lockhash, &tup->t_self);
		heap_freetuple(tup);

		/* a balance checkpoint whenever postings crosses a multiple of the interval */
		if (ledger_snapshot_interval > 0 &&
			s->postings / ledger_snapshot_interval !=
			(s->postings + s->nlegs) / ledger_snapshot_interval)
		{
			Datum		sv[Natts_snapshots];
			bool		sn[Natts_snapshots] = {0};

			if (snapshots == NULL)
				snapshots = table_open(c->balance_snapshots, RowExclusiveLock);
			sv[0] = PointerGetDatum(s->leg->account);
			sv[1] = PointerGetDatum(s->leg->currency);
			sv[2] = Int64GetDatum(position);
			sv[3] = TimestampTzGetDatum(recorded_at);
			sv[4] = Int64GetDatum(s->postings + s->nlegs);
			sv[5] = NumericGetDatum(s->new_debits);
			sv[6] = NumericGetDatum(s->new_credits);
			sv[7] = NumericGetDatum(balance[i]);
			tup = ledger_form_row(snapshots, snapshots_types, Natts_snapshots, sv, sn);
			ledger_insert_tuple(snapshots, tup);
			heap_freetuple(tup);
		}
	}

	for (i = 0; i < nlegs; i++)
	{
		LedgerLeg  *leg = &legs[i];
		Datum		ev[Natts_entries];
		bool		en[Natts_entries] = {0};
		HeapTuple	tup;

		ev[0] = PointerGetDatum(leg->account);
		ev[1] = PointerGetDatum(leg->currency);
		ev[2] = Int64GetDatum(position);
		ev[3] = PointerGetDatum(transfer_id);
		ev[4] = CStringGetTextDatum(leg->debit ? "debit" : "credit");
		ev[5] = NumericGetDatum(leg->amount);
		ev[6] = NumericGetDatum(balance[leg_slot[i]]);
		ev[7] = TimestampTzGetDatum(recorded_at);
		ev[8] = Int32GetDatum(i);
		tup = ledger_form_row(entries, entries_types, Natts_entries, ev, en);
		ledger_insert_tuple(entries, tup);
		heap_freetuple(tup);
	}
	if (snapshots != NULL)
		table_close(snapshots, NoLock);
}

/* the slot of leg's balance among slots[0..n), or NULL */
static PostSlot *
find_slot(PostSlot *slots, int n, LedgerLeg *leg)
{
	int			i;

	for (i = 0; i < n; i++)
		if (ledger_text_eq(slots[i].leg->account, leg->account) &&
			ledger_text_eq(slots[i].leg->currency, leg->currency))
			return &slots[i];
	return NULL;
}

/*
 * ledger_post -- post validated legs (amounts checked, balanced per currency;
 * an (account, currency) may appear in several) under transfer_id.  Returns the
 * position of the TransferPosted event, the original one on a retry.
 */
int64
ledger_post(text *transfer_id, LedgerLeg *legs, int nlegs, Jsonb *metadata)
{
	const LedgerCatalog *c = ledger_catalog();
	text	   *stream = ledger_prefixed_name("transfer:", transfer_id);
	Relation	events;
	Relation	balances;
	TupleTableSlot *tts;
	PostSlot   *slots;
	int		   *flags;
	Snapshot	snap;
	int64		position;
	LedgerNewEvent ev;
	LedgerAppended appended;
	LedgerStreamHead head;
	BlockNumber nblocks;
	Relation	accounts;
	BlockNumber accounts_nblocks;
	TupleTableSlot *accounts_tts;
	Relation	entries;
	int		   *leg_slot;
	int			nslots;
	int			i;

	events = table_open(c->events, RowExclusiveLock);
	balances = table_open(c->balances, RowExclusiveLock);
	tts = table_slot_create(balances, NULL);

	/*
	 * Everything that need not happen under a balance lock happens before
	 * it: the event is built, and the transfer's own stream is locked and
	 * checked for a twin, the original of a retry.  (Each transfer id has
	 * its own stream, so taking it first cannot deadlock with another
	 * posting.)  A hot account is held only for the balance work.
	 */
	ev.type = cstring_to_text("TransferPosted");
	ev.data = transfer_event_data(transfer_id, legs, nlegs, metadata);
	ev.metadata = ledger_empty_object();
	ledger_lock_stream(stream);
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (existing_transfer(events, stream, transfer_id, legs, nlegs, snap, &position, &head))
	{
		UnregisterSnapshot(snap);
		ExecDropSingleTupleTableSlot(tts);
		table_close(balances, NoLock);
		table_close(events, NoLock);
		return position;
	}

	/* one slot per balance, however many legs name it */
	slots = palloc0(sizeof(PostSlot) * nlegs);
	flags = palloc0(sizeof(int) * nlegs);
	leg_slot = palloc(sizeof(int) * nlegs);
	nslots = 0;
	for (i = 0; i < nlegs; i++)
	{
		PostSlot   *s = find_slot(slots, nslots, &legs[i]);
		Numeric    *add;

		if (s == NULL)
		{
			s = &slots[nslots];
			s->made = nslots++;
			s->leg = &legs[i];
			s->lockhash = ledger_balance_hash(legs[i].account, legs[i].currency);
			/* only to decide on the account lock below: is this a new row? */
			if (balance_known(s->lockhash, &s->hint))
				s->exists = true;
			else
			{
				read_balance(balances, s, snap, tts, NULL, 0);
				ItemPointerSetInvalid(&s->hint);
			}
		}
		leg_slot[i] = s->made;
		s->nlegs++;
		add = legs[i].debit ? &s->add_debits : &s->add_credits;
		*add = *add ? numeric_add_(*add, legs[i].amount) : legs[i].amount;
	}
	UnregisterSnapshot(snap);
	qsort(slots, nslots, sizeof(PostSlot), slot_cmp);
	/* each leg follows its slot to where the sort put it */
	{
		int		   *sorted_at = palloc(sizeof(int) * nslots);

		for (i = 0; i < nslots; i++)
			sorted_at[slots[i].made] = i;
		for (i = 0; i < nlegs; i++)
			leg_slot[i] = sorted_at[leg_slot[i]];
	}

	/*
	 * Whatever the critical section below needs and can get now, it gets
	 * now: the other relations, open; how far row hints may point (valid
	 * until we commit, because our locks on the tables keep VACUUM from
	 * cutting them short); and our transaction id, whose assignment takes a
	 * contended lock.
	 */
	nblocks = RelationGetNumberOfBlocks(balances);
	accounts = table_open(c->accounts, AccessShareLock);
	accounts_nblocks = RelationGetNumberOfBlocks(accounts);
	accounts_tts = table_slot_create(accounts, NULL);
	entries = table_open(c->account_entries, RowExclusiveLock);
	(void) GetTopTransactionId();

	/* lock step 2: accounts that get a new balance row */
	{
		uint64	   *acct = palloc(sizeof(uint64) * nslots);
		int			na = 0;

		for (i = 0; i < nslots; i++)
			if (!slots[i].exists)
			{
				text	   *s = ledger_prefixed_name("account:", slots[i].leg->account);

				acct[na++] = hash_bytes_extended((unsigned char *) VARDATA_ANY(s),
												 VARSIZE_ANY_EXHDR(s), 0);
			}
		qsort(acct, na, sizeof(uint64), u64_cmp);
		for (i = 0; i < na; i++)
			if (i == 0 || acct[i] != acct[i - 1])
				ledger_lock_hash(acct[i], LEDGER_LOCK_STREAM, ShareLock);
	}
	/* lock step 3: the balances, in lock-tag order */
	for (i = 0; i < nslots; i++)
		if (i == 0 || slots[i].lockhash != slots[i - 1].lockhash)
			ledger_lock_hash(slots[i].lockhash, LEDGER_LOCK_BALANCE, ExclusiveLock);

	/* everything committed before our locks were granted is visible now */
	snap = RegisterSnapshot(GetLatestSnapshot());
	check_accounts(accounts, accounts_tts, accounts_nblocks, slots, nslots, snap, flags);
	for (i = 0; i < nslots; i++)
	{
		ItemPointerData before = slots[i].hint;

		read_balance(balances, &slots[i], snap, tts, &slots[i].hint, nblocks);
		if (slots[i].exists)
			check_unchanged_since_snapshot(balances, tts, &slots[i], transfer_id);
		/* remembered unless the hint it came with was right */
		if (slots[i].exists &&
			(!ItemPointerIsValid(&before) || !ItemPointerEquals(&before, &slots[i].hint)))
			note_hint(&known_balances, &known_balances_relid, c->balances,
					  KNOWN_BALANCES_MAX, "ledger_cqrs known balances",
					  slots[i].lockhash, &slots[i].hint);
	}
	UnregisterSnapshot(snap);
	apply_legs(slots, nslots, flags, transfer_id);

	/* no twin under our lock: the posting goes after head */
	appended = ledger_append_at_head(events, stream, head, &ev, 1);
	position = appended.position;

	write_models(balances, entries, slots, nslots, legs, nlegs, leg_slot, transfer_id,
				 position, appended.recorded_at);
	CommandCounterIncrement();

	ExecDropSingleTupleTableSlot(accounts_tts);
	table_close(accounts, AccessShareLock);
	table_close(entries, NoLock);
	ExecDropSingleTupleTableSlot(tts);
	table_close(balances, NoLock);
	table_close(events, NoLock);
	return position;
}
