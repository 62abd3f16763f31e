/*-------------------------------------------------------------------------
 *
 * ledger.c
 *	  The ledger's command functions: register_currency, open_account,
 *	  close_account, transfer and post_entry.  Each validates its arguments,
 *	  appends exactly one event and updates the read models it owns, or
 *	  raises an error and changes nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ledger_cqrs.h"
#include "ledger.h"

PG_FUNCTION_INFO_V1(ledger_register_currency);
PG_FUNCTION_INFO_V1(ledger_open_account);
PG_FUNCTION_INFO_V1(ledger_close_account);
PG_FUNCTION_INFO_V1(ledger_transfer);
PG_FUNCTION_INFO_V1(ledger_post_entry);

#define Natts_accounts		6
#define Natts_currencies	4

static const Oid accounts_types[Natts_accounts] = {
	TEXTOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID
};
static const Oid currencies_types[Natts_currencies] = {
	TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID
};

static void
null_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
}

static text *
id_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	text	   *t;

	null_arg(fcinfo, argno, what);
	t = PG_GETARG_TEXT_PP(argno);
	ledger_check_id(t, what);
	return t;
}

/* metadata: NULL means {}, anything but an object is refused */
static Jsonb *
metadata_arg(FunctionCallInfo fcinfo, int argno)
{
	Jsonb	   *m;

	if (PG_ARGISNULL(argno))
		return ledger_empty_object();
	m = PG_GETARG_JSONB_P(argno);
	if (!JB_ROOT_IS_OBJECT(m))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata must be a JSON object")));
	return m;
}

/* a registered currency's scale, or 22023 */
static int
currency_scale_or_error(text *currency, const char *where)
{
	int			scale = ledger_currency_scale(currency);

	if (scale < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%scurrency \"%s\" is not registered", where, text_to_cstring(currency)),
				 errhint("Register it with ledger.register_currency(code, scale).")));
	return scale;
}

/* jsonb builder shorthand */
static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

static void
push_text(JsonbParseState **st, JsonbIteratorToken seq, text *t)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = VARDATA_ANY(t);
	v.val.string.len = VARSIZE_ANY_EXHDR(t);
	pushJsonbValue(st, seq, &v);
}

static void
push_jsonb(JsonbParseState **st, Jsonb *j)
{
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	pushJsonbValue(st, WJB_VALUE, &v);
}

static LedgerAppended
append_one(text *stream, const char *type, Jsonb *data)
{
	LedgerNewEvent ev;

	ev.type = cstring_to_text(type);
	ev.data = data;
	ev.metadata = ledger_empty_object();
	return ledger_append_to_stream(stream, LEDGER_ANY_VERSION, &ev, 1);
}

/*
 * ledger.register_currency(code text, scale integer) -> void
 */
Datum
ledger_register_currency(PG_FUNCTION_ARGS)
{
	const LedgerCatalog *c = ledger_catalog();
	text	   *code;
	char	   *s;
	int			scale;
	int			len;
	int			i;
	int			existing;
	text	   *stream;
	JsonbParseState *st = NULL;
	JsonbValue	v;
	LedgerAppended appended;
	Relation	rel;
	Datum		values[Natts_currencies];
	bool		nulls[Natts_currencies] = {0};
	HeapTuple	tup;

	PreventCommandIfReadOnly("ledger.register_currency()");

	null_arg(fcinfo, 0, "currency code");
	null_arg(fcinfo, 1, "scale");
	code = PG_GETARG_TEXT_PP(0);
	scale = PG_GETARG_INT32(1);
	s = text_to_cstring(code);
	len = strlen(s);
	if (len < 1 || len > 12)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("currency code \"%s\" must have 1 to 12 characters", s)));
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("currency code \"%s\" may contain only A-Z, 0-9 and _", s)));
	if (scale < 0 || scale > LEDGER_MAX_SCALE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scale %d of currency \"%s\" is out of range", scale, s),
				 errdetail("A scale is 0 to %d decimal places.", LEDGER_MAX_SCALE)));

	stream = ledger_prefixed_name("currency:", code);
	ledger_lock_stream(stream);
	existing = ledger_currency_scale(code);
	if (existing == scale)
		PG_RETURN_VOID();
	if (existing >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("currency \"%s\" is already registered with scale %d", s, existing),
				 errdetail("A currency's scale cannot change.")));

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "code");
	push_text(&st, WJB_VALUE, code);
	push_key(&st, "scale");
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(scale);
	pushJsonbValue(&st, WJB_VALUE, &v);
	appended = append_one(stream, "CurrencyRegistered",
						  JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));

	rel = table_open(c->currencies, RowExclusiveLock);
	values[0] = PointerGetDatum(code);
	values[1] = Int32GetDatum(scale);
	values[2] = TimestampTzGetDatum(appended.recorded_at);
	values[3] = Int64GetDatum(appended.position);
	tup = ledger_form_row(rel, currencies_types, Natts_currencies, values, nulls);
	ledger_insert_tuple(rel, tup);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	PG_RETURN_VOID();
}

/*
 * ledger.open_account(account text, flags text[], metadata jsonb) -> void
 */
Datum
ledger_open_account(PG_FUNCTION_ARGS)
{
	const LedgerCatalog *c = ledger_catalog();
	text	   *account = id_arg(fcinfo, 0, "account");
	Jsonb	   *metadata;
	ArrayType  *flags;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	int			i;
	int			bits = 0;
	text	   *stream;
	Relation	rel;
	TupleTableSlot *slot;
	Snapshot	snap;
	bool		exists;
	JsonbParseState *st = NULL;
	Datum		values[Natts_accounts];
	bool		nulls[Natts_accounts] = {0};
	Datum		out[2];
	int			nout = 0;
	LedgerAppended appended;
	HeapTuple	tup;

	PreventCommandIfReadOnly("ledger.open_account()");

	null_arg(fcinfo, 1, "flags");
	flags = PG_GETARG_ARRAYTYPE_P(1);
	metadata = metadata_arg(fcinfo, 2);
	if (ARR_NDIM(flags) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("flags must be a one-dimensional array")));
	deconstruct_array(flags, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *f;

		if (enulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("flags must not contain NULL")));
		f = TextDatumGetCString(elems[i]);
		if (strcmp(f, "debits_must_not_exceed_credits") == 0)
			bits |= LEDGER_FLAG_DEBITS_LE_CREDITS;
		else if (strcmp(f, "credits_must_not_exceed_debits") == 0)
			bits |= LEDGER_FLAG_CREDITS_LE_DEBITS;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown account flag \"%s\"", f),
					 errhint("The flags are debits_must_not_exceed_credits and credits_must_not_exceed_debits.")));
	}
	if (bits == (LEDGER_FLAG_DEBITS_LE_CREDITS | LEDGER_FLAG_CREDITS_LE_DEBITS))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an account cannot have both debits_must_not_exceed_credits and credits_must_not_exceed_debits")));
	if (bits & LEDGER_FLAG_DEBITS_LE_CREDITS)
		out[nout++] = CStringGetTextDatum("debits_must_not_exceed_credits");
	if (bits & LEDGER_FLAG_CREDITS_LE_DEBITS)
		out[nout++] = CStringGetTextDatum("credits_must_not_exceed_debits");
	flags = construct_array(out, nout, TEXTOID, -1, false, TYPALIGN_INT);

	/* the account stream's lock serializes open/close of one account */
	stream = ledger_prefixed_name("account:", account);
	ledger_lock_stream(stream);
	rel = table_open(c->accounts, RowExclusiveLock);
	slot = table_slot_create(rel, NULL);
	snap = RegisterSnapshot(GetLatestSnapshot());
	exists = ledger_fetch_by_text_key(rel, c->accounts_pkey, 1, &account, snap, slot);
	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(slot);
	if (exists)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("account \"%s\" already exists", text_to_cstring(account))));

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "account");
	push_text(&st, WJB_VALUE, account);
	push_key(&st, "flags");
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < nout; i++)
		push_text(&st, WJB_ELEM, DatumGetTextPP(out[i]));
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	push_key(&st, "metadata");
	push_jsonb(&st, metadata);
	appended = append_one(stream, "AccountOpened",
						  JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));

	values[0] = PointerGetDatum(account);
	values[1] = PointerGetDatum(flags);
	values[2] = CStringGetTextDatum("open");
	values[3] = TimestampTzGetDatum(appended.recorded_at);
	nulls[4] = true;
	values[5] = JsonbPGetDatum(metadata);
	tup = ledger_form_row(rel, accounts_types, Natts_accounts, values, nulls);
	ledger_insert_tuple(rel, tup);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	PG_RETURN_VOID();
}

/*
 * ledger.close_account(account text) -> void
 *
 * Takes the account stream's lock exclusively (postings that open a new
 * currency on the account hold it shared), then every balance lock of the
 * account, and closes only if every balance is zero.
 */
Datum
ledger_close_account(PG_FUNCTION_ARGS)
{
	const LedgerCatalog *c = ledger_catalog();
	text	   *account = id_arg(fcinfo, 0, "account");
	text	   *stream = ledger_prefixed_name("account:", account);
	Relation	accounts;
	Relation	balances;
	Relation	idx;
	TupleTableSlot *slot;
	TupleTableSlot *bslot;
	Snapshot	snap;
	IndexScanDesc scan;
	ScanKeyData key;
	List	   *currencies = NIL;
	ListCell   *lc;
	bool		isnull;
	text	   *status;
	Datum		values[Natts_accounts];
	bool		nulls[Natts_accounts];
	JsonbParseState *st = NULL;
	LedgerAppended appended;
	HeapTuple	tup;
	int			i;

	PreventCommandIfReadOnly("ledger.close_account()");

	/*
	 * The log first, as every append does: a rebuild of the read models
	 * (SHARE on ledger.events) then either waits for us or has finished
	 * before we read the account row.
	 */
	table_close(table_open(c->events, RowExclusiveLock), NoLock);
	ledger_lock_stream(stream);
	accounts = table_open(c->accounts, RowExclusiveLock);
	balances = table_open(c->balances, AccessShareLock);
	slot = table_slot_create(accounts, NULL);
	bslot = table_slot_create(balances, NULL);

	snap = RegisterSnapshot(GetLatestSnapshot());
	if (!ledger_fetch_by_text_key(accounts, c->accounts_pkey, 1, &account, snap, slot))
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("account \"%s\" does not exist", text_to_cstring(account))));
	status = DatumGetTextPP(slot_getattr(slot, 3, &isnull));
	if (VARSIZE_ANY_EXHDR(status) != 4 || memcmp(VARDATA_ANY(status), "open", 4) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("account \"%s\" is already closed", text_to_cstring(account))));

	/* the account's currencies, then their balance locks in a fixed order */
	idx = index_open(c->balances_pkey, AccessShareLock);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(account));
	scan = index_beginscan(balances, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, bslot))
		currencies = lappend(currencies,
							 DatumGetTextPCopy(slot_getattr(bslot, 2, &isnull)));
	index_endscan(scan);
	index_close(idx, AccessShareLock);
	UnregisterSnapshot(snap);

	{
		uint64	   *hashes = palloc(sizeof(uint64) * Max(list_length(currencies), 1));
		int			n = 0;

		foreach(lc, currencies)
		{
			uint64		h = ledger_balance_hash(account, lfirst(lc));
			int			j;

			for (j = n; j > 0 && hashes[j - 1] > h; j--)	/* insertion sort */
				hashes[j] = hashes[j - 1];
			hashes[j] = h;
			n++;
		}
		for (i = 0; i < n; i++)
			ledger_lock_hash(hashes[i], LEDGER_LOCK_BALANCE, ExclusiveLock);
	}

	snap = RegisterSnapshot(GetLatestSnapshot());
	foreach(lc, currencies)
	{
		text	   *keys[2] = {account, lfirst(lc)};

		if (ledger_fetch_by_text_key(balances, c->balances_pkey, 2, keys, snap, bslot))
		{
			Datum		bal = slot_getattr(bslot, 5, &isnull);

			if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, bal,
												  NumericGetDatum(int64_to_numeric(0)))) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("account \"%s\" cannot be closed: its %s balance is %s",
								text_to_cstring(account), text_to_cstring(lfirst(lc)),
								DatumGetCString(DirectFunctionCall1(numeric_out, bal))),
						 errdetail("Only an account whose every balance is zero can be closed.")));
		}
	}
	/* re-read the account row under all locks, for the update */
	if (!ledger_fetch_by_text_key(accounts, c->accounts_pkey, 1, &account, snap, slot))
		elog(ERROR, "account \"%s\" vanished", text_to_cstring(account));
	UnregisterSnapshot(snap);

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "account");
	push_text(&st, WJB_VALUE, account);
	appended = append_one(stream, "AccountClosed",
						  JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));

	slot_getallattrs(slot);
	for (i = 0; i < Natts_accounts; i++)
	{
		values[i] = slot->tts_values[i];
		nulls[i] = slot->tts_isnull[i];
	}
	values[2] = CStringGetTextDatum("closed");
	values[4] = TimestampTzGetDatum(appended.recorded_at);
	nulls[4] = false;
	tup = ledger_form_row(accounts, accounts_types, Natts_accounts, values, nulls);
	(void) ledger_update_tuple(accounts, &slot->tts_tid, tup);

	ExecDropSingleTupleTableSlot(slot);
	ExecDropSingleTupleTableSlot(bslot);
	table_close(balances, AccessShareLock);
	table_close(accounts, NoLock);
	CommandCounterIncrement();
	PG_RETURN_VOID();
}

/*
 * ledger.transfer(transfer_id, debit_account, credit_account, amount,
 *                 currency, metadata) -> bigint
 */
Datum
ledger_transfer(PG_FUNCTION_ARGS)
{
	text	   *transfer_id = id_arg(fcinfo, 0, "transfer_id");
	text	   *debit = id_arg(fcinfo, 1, "debit_account");
	text	   *credit = id_arg(fcinfo, 2, "credit_account");
	text	   *currency;
	Numeric		amount;
	Jsonb	   *metadata;
	int			scale;
	LedgerLeg	legs[2];

	PreventCommandIfReadOnly("ledger.transfer()");

	null_arg(fcinfo, 3, "amount");
	null_arg(fcinfo, 4, "currency");
	amount = PG_GETARG_NUMERIC(3);
	currency = PG_GETARG_TEXT_PP(4);
	metadata = metadata_arg(fcinfo, 5);

	if (ledger_text_eq(debit, credit))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("debit and credit account must differ, both are \"%s\"",
						text_to_cstring(debit))));
	scale = currency_scale_or_error(currency, "");
	amount = ledger_check_amount(amount, currency, scale, "");

	legs[0].account = debit;
	legs[0].currency = currency;
	legs[0].debit = true;
	legs[0].amount = amount;
	legs[1].account = credit;
	legs[1].currency = currency;
	legs[1].debit = false;
	legs[1].amount = amount;

	PG_RETURN_INT64(ledger_post(transfer_id, legs, 2, metadata));
}

/* a string member of a leg object, or 22023 */
static text *
leg_string(JsonbContainer *leg, int i, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(leg, key, strlen(key), NULL);

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("legs[%d] has no \"%s\"", i, key)));
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("legs[%d].%s must be a JSON string", i, key)));
	return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
}

/*
 * ledger.post_entry(transfer_id, legs jsonb, metadata) -> bigint
 */
Datum
ledger_post_entry(PG_FUNCTION_ARGS)
{
	text	   *transfer_id = id_arg(fcinfo, 0, "transfer_id");
	Jsonb	   *arr;
	Jsonb	   *metadata;
	LedgerLeg  *legs;
	int			n;
	int			i;
	int			j;
	char		where[64];

	PreventCommandIfReadOnly("ledger.post_entry()");

	null_arg(fcinfo, 1, "legs");
	arr = PG_GETARG_JSONB_P(1);
	metadata = metadata_arg(fcinfo, 2);
	if (!JB_ROOT_IS_ARRAY(arr) || JB_ROOT_IS_SCALAR(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("legs must be a JSON array of leg objects")));
	n = JB_ROOT_COUNT(arr);
	if (n < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a posting needs at least two legs, got %d", n)));
	if (n > LEDGER_MAX_LEGS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a posting has at most %d legs, got %d", LEDGER_MAX_LEGS, n),
				 errhint("Split it into several postings.")));

	legs = palloc(sizeof(LedgerLeg) * n);
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&arr->root, i);
		JsonbContainer *leg;
		JsonbValue *v;
		text	   *side;
		int			scale;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("legs[%d] is not a JSON object", i)));
		leg = elem->val.binary.data;
		legs[i].account = leg_string(leg, i, "account");
		ledger_check_id(legs[i].account, "account");
		side = leg_string(leg, i, "side");
		if (VARSIZE_ANY_EXHDR(side) == 5 && memcmp(VARDATA_ANY(side), "debit", 5) == 0)
			legs[i].debit = true;
		else if (VARSIZE_ANY_EXHDR(side) == 6 && memcmp(VARDATA_ANY(side), "credit", 6) == 0)
			legs[i].debit = false;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("legs[%d].side must be \"debit\" or \"credit\", not \"%s\"",
							i, text_to_cstring(side))));
		legs[i].currency = leg_string(leg, i, "currency");
		v = getKeyJsonValueFromContainer(leg, "amount", 6, NULL);
		if (v == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("legs[%d] has no \"amount\"", i)));
		if (v->type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("legs[%d].amount must be a JSON number", i)));
		snprintf(where, sizeof(where), "legs[%d]: ", i);
		scale = currency_scale_or_error(legs[i].currency, where);
		legs[i].amount = ledger_check_amount(v->val.numeric, legs[i].currency, scale, where);
	}

	/* balanced per currency */
	for (i = 0; i < n; i++)
	{
		Numeric		net = int64_to_numeric(0);
		bool		seen = false;

		for (j = 0; j < i && !seen; j++)
			seen = ledger_text_eq(legs[i].currency, legs[j].currency);
		if (seen)
			continue;
		for (j = i; j < n; j++)
			if (ledger_text_eq(legs[i].currency, legs[j].currency))
				net = DatumGetNumeric(DirectFunctionCall2(legs[j].debit ? numeric_add : numeric_sub,
														  NumericGetDatum(net),
														  NumericGetDatum(legs[j].amount)));
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(net),
											  NumericGetDatum(int64_to_numeric(0)))) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("posting \"%s\" is unbalanced in %s",
							text_to_cstring(transfer_id), text_to_cstring(legs[i].currency)),
					 errdetail("Debits minus credits in %s is %s; it must be 0.",
							   text_to_cstring(legs[i].currency),
							   DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(net))))));
	}

	PG_RETURN_INT64(ledger_post(transfer_id, legs, n, metadata));
}
