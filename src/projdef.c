/*-------------------------------------------------------------------------
 *
 * projdef.c
 *	  Projection definitions: parse and analyze the user's query with
 *	  PostgreSQL's own parser, check that it is a pure aggregate over
 *	  ledger.events, build the SQL that folds a batch of events into the
 *	  projection's table, and stamp its snapshots.
 *
 * A definition has the shape
 *
 *	 SELECT <keys>, <count|sum|min|max ...> FROM ledger.events e
 *			[, LATERAL <set-returning function of e>] [WHERE ...] GROUP BY <keys>
 *
 * The log is insert-only, so every change to the projection is an insert
 * delta: the fold runs the user's query over just the new events and merges
 * the result with INSERT ... ON CONFLICT (keys) DO UPDATE: counts and sums
 * add, min takes LEAST, max GREATEST.  The batch is chosen by replacing the
 * text of the ledger.events reference (located with the core lexer) by a
 * subquery with a restriction, so the user's query text is reused verbatim.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "common/keywords.h"
#include "catalog/pg_am.h"
#include "lib/stringinfo.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parsetree.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/ruleutils.h"
#include "utils/varlena.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "ledger_cqrs.h"
#include "projection.h"

#define REJECT(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED), \
			 errmsg("projection query not supported: " __VA_ARGS__), \
			 errhint("A projection is SELECT <keys>, <count|sum|min|max> FROM ledger.events e [, LATERAL f(e)] [WHERE ...] GROUP BY <keys>.")))

/*
 * ledger_push_fixed_search_path -- analyze and run projection SQL in a fixed
 * environment, whoever calls: search_path = pg_catalog, pg_temp, and the
 * settings that decide what a literal means (TimeZone, DateStyle,
 * IntervalStyle, standard_conforming_strings), so a literal such as
 * '2024-01-01'::timestamptz or 'a\b' means the same in every session;
 * and extra_float_digits (1: the exact shortest form), so a snapshot's
 * floats read back exactly.  Returns the GUC nest level to pass to AtEOXact_GUC.
 */
int
ledger_push_fixed_search_path(void)
{
	static const char *const settings[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"TimeZone", "UTC"},
		{"DateStyle", "ISO, YMD"},
		{"IntervalStyle", "postgres"},
		{"standard_conforming_strings", "on"},
		/* how snapshots (to_jsonb) write a float: exactly */
		{"extra_float_digits", "1"},
	};
	int			nest = NewGUCNestLevel();
	size_t		i;

	for (i = 0; i < lengthof(settings); i++)
		(void) set_config_option(settings[i][0], settings[i][1],
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/* what check_vars_walker needs of the query */
typedef struct VarCheck
{
	int			events_rti;		/* ledger.events' range table index */
	List	   *rtable;
} VarCheck;

/*
 * Vars: no system columns, no tx_order, no whole-row references.  A column
 * of an explicit JOIN is checked as the column it stands for (join alias
 * lists themselves name every column, tx_order included, and are skipped).
 */
static bool
check_vars_walker(Node *node, void *context)
{
	VarCheck   *vc = (VarCheck *) context;

	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *v = (Var *) node;
		RangeTblEntry *rte;

		if (v->varattno < 0)
			REJECT("it reads a system column");
		if (v->varlevelsup != 0)
			return false;
		if ((int) v->varno == vc->events_rti)
		{
			if (v->varattno == 0)
				REJECT("it reads whole rows of ledger.events; name the columns");
			if (v->varattno == Anum_events_tx_order)
				REJECT("it reads tx_order, which is delivery bookkeeping, not event content");
			return false;
		}
		rte = rt_fetch(v->varno, vc->rtable);
		if (rte->rtekind == RTE_JOIN)
		{
			if (v->varattno == 0)
				REJECT("it reads whole rows of a join; name the columns");
			return check_vars_walker(list_nth(rte->joinaliasvars, v->varattno - 1), context);
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, check_vars_walker, context,
								 QTW_IGNORE_JOINALIASES);
	return expression_tree_walker(node, check_vars_walker, context);
}

static bool
mutable_func_checker(Oid func_id, void *context)
{
	if (func_volatile(func_id) != PROVOLATILE_IMMUTABLE)
	{
		*(Oid *) context = func_id;
		return true;
	}
	return false;
}

static bool user_functions_walker(Node *node, void *context);

/*
 * collect_function -- check_functions_in_node's callback: note a
 * user-defined function once, and, when its body is stored parsed (BEGIN
 * ATOMIC or RETURN), the ones that body calls in turn.
 */
static bool
collect_function(Oid fn, void *context)
{
	List	  **funcs = (List **) context;

	if (fn < FirstNormalObjectId || list_member_oid(*funcs, fn))
		return false;
	*funcs = lappend_oid(*funcs, fn);
#if PG_VERSION_NUM >= 140000
	{
		HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
		bool		isnull;
		Datum		body;

		if (!HeapTupleIsValid(tp))
			elog(ERROR, "cache lookup failed for function %u", fn);
		body = SysCacheGetAttr(PROCOID, tp, Anum_pg_proc_prosqlbody, &isnull);
		if (!isnull)
			(void) user_functions_walker(stringToNode(TextDatumGetCString(body)), funcs);
		ReleaseSysCache(tp);
	}
#endif
	return false;
}

/*
 * user_functions_walker -- the user-defined functions a query calls: those
 * behind its function calls, operators, casts and aggregates, and the
 * equality of its GROUP BY keys.
 */
static bool
user_functions_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	(void) check_functions_in_node(node, collect_function, context);
	if (IsA(node, SortGroupClause))
		(void) collect_function(get_opcode(((SortGroupClause *) node)->eqop), context);
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, user_functions_walker, context,
								 QTW_EXAMINE_SORTGROUP);
	return expression_tree_walker(node, user_functions_walker, context);
}

/* find the first function that is not immutable, to name it */
static bool
find_mutable_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, mutable_func_checker, context))
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, find_mutable_walker, context, 0);
	return expression_tree_walker(node, find_mutable_walker, context);
}

/*
 * check_domains_walker -- a cast to a domain runs the domain's CHECK
 * constraints, those of its base domains included: refuse one that calls a
 * function that is not immutable.
 */
static bool
check_domains_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, CoerceToDomain))
	{
		Oid			domain = ((CoerceToDomain *) node)->resulttype;
		/* in the context: it holds the callback that releases the cache */
		DomainConstraintRef *ref = palloc(sizeof(DomainConstraintRef));
		ListCell   *lc;

		InitDomainConstraintRef(domain, ref, CurrentMemoryContext, false);
		foreach(lc, ref->constraints)
		{
			DomainConstraintState *con = (DomainConstraintState *) lfirst(lc);
			Oid			fn = InvalidOid;

			if (con->check_expr == NULL ||
				!contain_mutable_functions((Node *) con->check_expr))
				continue;
			(void) find_mutable_walker((Node *) con->check_expr, &fn);
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("projection query not supported: it is not a pure function of the events"),
					 errdetail("It casts to domain %s, whose constraint \"%s\" calls %s(), which is not immutable.",
							   format_type_be(domain), con->name,
							   OidIsValid(fn) ? get_func_name(fn) : "a function"),
					 errhint("A domain in a projection may check only with immutable functions.")));
		}
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, check_domains_walker, context, 0);
	return expression_tree_walker(node, check_domains_walker, context);
}

/*
 * Time-dependent literals.  The parser folds a literal such as
 * 'now'::timestamptz or 'today' compared with a date into a Const, so no
 * function is left for the volatility check to see; yet every fold would
 * read it anew.  A coerced literal's Const keeps the literal's location,
 * which finds the literal's text in the raw parse tree.
 */
static bool
collect_string_literals(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, A_Const) && !((A_Const *) node)->isnull &&
		IsA(&((A_Const *) node)->val, String))
		*(List **) context = lappend(*(List **) context, node);
	return raw_expression_tree_walker(node, collect_string_literals, context);
}

/* date, time, timetz, timestamp or timestamptz, or an array or range of one */
static bool
is_datetime_type(Oid type)
{
	Oid			elem;

	type = getBaseType(type);
	elem = get_base_element_type(type);
	if (OidIsValid(elem))
		type = elem;
	else if (type_is_multirange(type))
		type = get_range_subtype(get_multirange_range(type));
	else if (type_is_range(type))
		type = get_range_subtype(type);
	return type == DATEOID || type == TIMEOID || type == TIMETZOID ||
		type == TIMESTAMPOID || type == TIMESTAMPTZOID;
}

/* does str have now, today, tomorrow or yesterday as a word? */
static bool
names_current_time(const char *str)
{
	static const char *const words[] = {"now", "today", "tomorrow", "yesterday"};
	const char *p = str;

	while (*p)
	{
		const char *start = p;
		size_t		i;

		while (isalpha((unsigned char) *p))
			p++;
		for (i = 0; i < lengthof(words); i++)
			if ((size_t) (p - start) == strlen(words[i]) &&
				pg_strncasecmp(start, words[i], p - start) == 0)
				return true;
		if (p == start)
			p++;
	}
	return false;
}

static bool
check_time_literals_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Const) && ((Const *) node)->location >= 0 &&
		is_datetime_type(((Const *) node)->consttype))
	{
		Const	   *c = (Const *) node;
		ListCell   *lc;

		foreach(lc, (List *) context)
		{
			A_Const    *lit = lfirst_node(A_Const, lc);

			if (lit->location == c->location && names_current_time(strVal(&lit->val)))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("projection query not supported: it is not a pure function of the events"),
						 errdetail("The literal '%s' of type %s means the time it is read, which every fold reads anew.",
								   strVal(&lit->val), format_type_be(c->consttype)),
						 errhint("Use a fixed time such as '2024-06-01 00:00:00+00', or derive it from the event, e.g. e.recorded_at."),
						 errposition(c->location + 1)));
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, check_time_literals_walker, context, 0);
	return expression_tree_walker(node, check_time_literals_walker, context);
}

static ProjColumnKind
check_aggregate(Aggref *agg)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(agg->aggfnoid));
	Form_pg_proc proc;
	ProjColumnKind kind;
	char	   *name;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", agg->aggfnoid);
	proc = (Form_pg_proc) GETSTRUCT(tp);
	name = pstrdup(NameStr(proc->proname));
	if (proc->pronamespace != PG_CATALOG_NAMESPACE)
		REJECT("aggregate %s.%s is not one of count, sum, min, max",
			   get_namespace_name(proc->pronamespace), name);
	ReleaseSysCache(tp);

	if (strcmp(name, "count") == 0)
		kind = PROJ_COUNT;
	else if (strcmp(name, "sum") == 0)
	{
		/*
		 * Floating-point addition is not associative: sums merged batch by
		 * batch differ in the last digits from the query's over the log.
		 */
		Oid			argtype = exprType((Node *) linitial_node(TargetEntry, agg->args)->expr);

		if (argtype == FLOAT4OID || argtype == FLOAT8OID)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("projection query not supported: sum() of %s", format_type_be(argtype)),
					 errdetail("Floating-point addition is not associative, so sums merged batch by batch would differ from the query's in the last digits."),
					 errhint("Sum an exact type, e.g. sum((e.data->>'v')::numeric).")));
		kind = PROJ_SUM;
	}
	else if (strcmp(name, "min") == 0)
		kind = PROJ_MIN;
	else if (strcmp(name, "max") == 0)
		kind = PROJ_MAX;
	else
		REJECT("aggregate %s() is not one of count, sum, min, max", name);

	if (agg->aggkind != AGGKIND_NORMAL)
		REJECT("ordered-set or hypothetical aggregate %s()", name);
	if (agg->aggdistinct != NIL)
		REJECT("DISTINCT inside %s()", name);
	if (agg->aggorder != NIL)
		REJECT("ORDER BY inside %s()", name);
	return kind;
}

/* does the join tree node n contain range table entry rti? */
static bool
jointree_has(Node *n, int rti)
{
	ListCell   *lc;

	if (IsA(n, RangeTblRef))
		return ((RangeTblRef *) n)->rtindex == rti;
	if (IsA(n, JoinExpr))
		return jointree_has(((JoinExpr *) n)->larg, rti) ||
			jointree_has(((JoinExpr *) n)->rarg, rti);
	if (IsA(n, FromExpr))
		foreach(lc, ((FromExpr *) n)->fromlist)
			if (jointree_has(lfirst(lc), rti))
				return true;
	return false;
}

/*
 * check_outer_joins -- ledger.events must not be on the nullable side of an
 * outer join: a fold runs the query over a batch of events, so every batch
 * would add again the rows of the other side that match none of its events.
 */
static void
check_outer_joins(Node *n, int events_rti)
{
	ListCell   *lc;

	if (IsA(n, FromExpr))
		foreach(lc, ((FromExpr *) n)->fromlist)
			check_outer_joins(lfirst(lc), events_rti);
	if (IsA(n, JoinExpr))
	{
		JoinExpr   *j = (JoinExpr *) n;

		if ((j->jointype == JOIN_LEFT && jointree_has(j->rarg, events_rti)) ||
			(j->jointype == JOIN_RIGHT && jointree_has(j->larg, events_rti)) ||
			(j->jointype == JOIN_FULL && jointree_has(n, events_rti)))
			REJECT("ledger.events is on the nullable side of a %s JOIN; each batch of events would add the other side's unmatched rows again",
				   j->jointype == JOIN_FULL ? "FULL" : j->jointype == JOIN_LEFT ? "LEFT" : "RIGHT");
		check_outer_joins(j->larg, events_rti);
		check_outer_joins(j->rarg, events_rti);
	}
}

static const char *
rte_kind_name(RangeTblEntry *rte)
{
	switch (rte->rtekind)
	{
		case RTE_SUBQUERY:
			return "a subquery in FROM";
		case RTE_VALUES:
			return "a VALUES list";
		case RTE_CTE:
			return "a WITH query (CTE)";
		case RTE_TABLEFUNC:
			return "a table function (XMLTABLE or JSON_TABLE)";
		case RTE_NAMEDTUPLESTORE:
			return "a transition table";
		default:
			return "an unsupported FROM item";
	}
}

/*
 * check_query -- the analyzed query has the supported shape and is pure.
 * Returns the range table index of ledger.events.
 */
static int
check_query(Query *q)
{
	const LedgerCatalog *c = ledger_catalog();
	int			events_rti = 0;
	int			rti = 0;
	ListCell   *lc;
	Oid			mutable_fn = InvalidOid;
	VarCheck	vc;

	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL)
		REJECT("it is not a SELECT");
	if (q->cteList != NIL)
		REJECT("a WITH query (CTE)");
	if (q->hasSubLinks)
		REJECT("a subquery (sublink)");
	if (q->hasWindowFuncs)
		REJECT("a window function");
	if (q->distinctClause != NIL)
		REJECT("DISTINCT");
	if (q->havingQual != NULL)
		REJECT("HAVING");
	if (q->sortClause != NIL)
		REJECT("ORDER BY");
	if (q->limitCount != NULL || q->limitOffset != NULL)
		REJECT("LIMIT or OFFSET");
	if (q->setOperations != NULL)
		REJECT("UNION, INTERSECT or EXCEPT");
	if (q->rowMarks != NIL)
		REJECT("FOR UPDATE or FOR SHARE");
	if (q->groupingSets != NIL)
		REJECT("GROUPING SETS, ROLLUP or CUBE");
	if (q->hasTargetSRFs)
		REJECT("a set-returning function in the select list; put it in FROM as LATERAL");

	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		rti++;
		switch (rte->rtekind)
		{
			case RTE_RELATION:
				if (rte->relid != c->events)
					REJECT("it reads relation %s; a projection may read only ledger.events",
						   get_rel_name(rte->relid));
				if (events_rti != 0)
					REJECT("it reads ledger.events more than once");
				events_rti = rti;
				break;
			case RTE_FUNCTION:
			case RTE_JOIN:
				break;
			default:
				REJECT("%s", rte_kind_name(rte));
		}
	}
	if (events_rti == 0)
		REJECT("it does not read FROM ledger.events");
	if (q->groupClause == NIL)
		REJECT("it has no GROUP BY; the group keys become the table's primary key");

	check_outer_joins((Node *) q->jointree, events_rti);

	vc.events_rti = events_rti;
	vc.rtable = q->rtable;
	(void) query_tree_walker(q, check_vars_walker, &vc, QTW_IGNORE_JOINALIASES);

	if (contain_mutable_functions((Node *) q))
	{
		(void) query_tree_walker(q, find_mutable_walker, &mutable_fn, 0);
		if (OidIsValid(mutable_fn))
		{
			char		vol = func_volatile(mutable_fn);

			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("projection query not supported: it is not a pure function of the events"),
					 errdetail("%s() is %s; a projection may call only immutable functions.",
							   get_func_name(mutable_fn),
							   vol == PROVOLATILE_VOLATILE ? "volatile" : "stable"),
					 errhint("Derive values from the event itself, e.g. e.recorded_at instead of now().")));
		}
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projection query not supported: it is not a pure function of the events"),
				 errdetail("It uses a volatile or stable expression, such as CURRENT_TIMESTAMP or a stable cast.")));
	}
	(void) query_tree_walker(q, check_domains_walker, NULL, 0);
	return events_rti;
}

/*
 * names_events_by_schema -- a column reference through the schema,
 * ledger.events.col: the batches put in ledger.events' place are subqueries,
 * which only an alias can name.
 */
static bool
names_events_by_schema(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, ColumnRef))
	{
		List	   *f = ((ColumnRef *) node)->fields;
		int			n = list_length(f);

		return n >= 3 &&
			IsA(list_nth(f, n - 3), String) && strcmp(strVal(list_nth(f, n - 3)), "ledger") == 0 &&
			IsA(list_nth(f, n - 2), String) && strcmp(strVal(list_nth(f, n - 2)), "events") == 0;
	}
	return raw_expression_tree_walker(node, names_events_by_schema, context);
}

/*
 * find_events_rangevar -- the RangeVar of ledger.events in a FROM list.
 */
static RangeVar *
find_events_rangevar(List *from)
{
	const LedgerCatalog *c = ledger_catalog();
	ListCell   *lc;

	foreach(lc, from)
	{
		Node	   *n = lfirst(lc);

		if (IsA(n, RangeVar))
		{
			RangeVar   *rv = (RangeVar *) n;

			if (RangeVarGetRelid(rv, NoLock, true) == c->events)
				return rv;
		}
		else if (IsA(n, JoinExpr))
		{
			JoinExpr   *j = (JoinExpr *) n;
			RangeVar   *rv = find_events_rangevar(list_make2(j->larg, j->rarg));

			if (rv != NULL)
				return rv;
		}
	}
	return NULL;
}

/*
 * name_end -- where the (possibly qualified) name starting at start ends:
 * the offset of the next token, found with the core lexer.
 */
static int
name_end(const char *query, int start)
{
	core_yy_extra_type extra;
	core_YYSTYPE lval;
	YYLTYPE		lloc;
	core_yyscan_t scanner = scanner_init(query + start, &extra,
										 &ScanKeywords, ScanKeywordTokens);
	bool		want_name = true;
	int			end = strlen(query + start);

	for (;;)
	{
		int			tok = core_yylex(&lval, &lloc, scanner);

		if (tok == 0)
			break;
		if (want_name)
			want_name = false;
		else if (tok == '.')
			want_name = true;
		else
		{
			end = lloc;
			break;
		}
	}
	scanner_finish(scanner);
	return start + end;
}

/* report parse positions against the projection's query, not the caller's */
static void
definition_error_callback(void *arg)
{
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery((const char *) arg);
	}
	else
		errcontext("projection query: %s", (const char *) arg);
}

/*
 * ledger_parse_projection -- parse, analyze and check a definition.  Raises
 * 42601 on a syntax error and 0A000 on anything unsupported.  The caller
 * has fixed the search_path.
 */
ProjectionDef *
ledger_parse_projection(const char *query)
{
	ProjectionDef *def = palloc0(sizeof(ProjectionDef));
	List	   *raw;
	RawStmt    *rs;
	SelectStmt *sel;
	Query	   *q;
	RangeVar   *rv;
	ListCell   *lc;
	int			end;
	int			i;
	char	   *normalized;
	ErrorContextCallback errcb;

	errcb.callback = definition_error_callback;
	errcb.arg = (void *) query;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	raw = raw_parser(query, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		REJECT("it must be exactly one SELECT statement");
	rs = linitial_node(RawStmt, raw);

	/*
	 * Keep exactly the statement's text: no trailing semicolon or comment
	 * may end up inside the SQL the fold builds around it.
	 */
	if (rs->stmt_len > 0 || rs->stmt_location > 0)
	{
		char	   *exact = rs->stmt_len > 0 ? pnstrdup(query + rs->stmt_location, rs->stmt_len)
			: pstrdup(query + rs->stmt_location);

		error_context_stack = errcb.previous;
		return ledger_parse_projection(exact);
	}
	if (!IsA(rs->stmt, SelectStmt))
		REJECT("it is not a SELECT");
	sel = (SelectStmt *) rs->stmt;
	if (sel->op != SETOP_NONE)
		REJECT("UNION, INTERSECT or EXCEPT");
	if (sel->intoClause != NULL)
		REJECT("SELECT INTO");
	if (sel->withClause != NULL)
		REJECT("a WITH query (CTE)");
	if (sel->valuesLists != NIL)
		REJECT("a VALUES list");

	/* on a copy: analysis rewrites a JOIN's arms, which we look at below */
#if PG_VERSION_NUM >= 150000
	q = parse_analyze_fixedparams(copyObject(rs), query, NULL, 0, NULL);
#else
	q = parse_analyze(copyObject(rs), query, NULL, 0, NULL);
#endif
	(void) check_query(q);
	{
		List	   *literals = NIL;

		(void) collect_string_literals(rs->stmt, &literals);
		(void) query_tree_walker(q, check_time_literals_walker, literals, 0);
	}

	/* the columns: every one a group key or an allowed aggregate */
	def->query = pstrdup(query);
	def->ncols = 0;
	foreach(lc, q->targetList)
		if (!lfirst_node(TargetEntry, lc)->resjunk)
			def->ncols++;
	if (list_length(q->targetList) != def->ncols)
		REJECT("every GROUP BY key must also be in the select list");
	def->colnames = palloc(sizeof(char *) * def->ncols);
	def->kinds = palloc(sizeof(ProjColumnKind) * def->ncols);
	def->coltypes = palloc(sizeof(Oid) * def->ncols);
	def->coltypmods = palloc(sizeof(int32) * def->ncols);
	def->colcollations = palloc(sizeof(Oid) * def->ncols);
	i = 0;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		int			j;

		if (tle->resname == NULL || strcmp(tle->resname, "?column?") == 0)
			REJECT("column %d has no name; give it one with AS", i + 1);
		for (j = 0; j < i; j++)
			if (strcmp(def->colnames[j], tle->resname) == 0)
				REJECT("column name \"%s\" appears twice", tle->resname);
		def->colnames[i] = pstrdup(tle->resname);
		def->coltypes[i] = exprType((Node *) tle->expr);
		def->coltypmods[i] = exprTypmod((Node *) tle->expr);
		def->colcollations[i] = exprCollation((Node *) tle->expr);

		if (tle->ressortgroupref != 0 &&
			get_sortgroupref_clause_noerr(tle->ressortgroupref, q->groupClause) != NULL)
		{
			def->kinds[i] = PROJ_KEY;
			if (!OidIsValid(GetDefaultOpClass(def->coltypes[i], BTREE_AM_OID)))
				REJECT("key column \"%s\" has type %s, which cannot be part of a primary key",
					   tle->resname, format_type_be(def->coltypes[i]));
		}
		else if (IsA(tle->expr, Aggref))
			def->kinds[i] = check_aggregate((Aggref *) tle->expr);
		else
			REJECT("column \"%s\" is neither a GROUP BY key nor count, sum, min or max of the events",
				   tle->resname);
		i++;
	}

	/* where the ledger.events reference is, to splice batches in */
	rv = find_events_rangevar(sel->fromClause);
	if (rv == NULL)
		REJECT("it does not read FROM ledger.events");
	if (!rv->inh)
		REJECT("FROM ONLY");
	end = name_end(query, rv->location);
	def->prefix = pnstrdup(query, rv->location);
	def->suffix = pstrdup(query + end);
	def->need_alias = (rv->alias == NULL);
	if (def->need_alias && names_events_by_schema((Node *) sel, NULL))
		REJECT("a column named through the schema, as ledger.events.type; give the table an alias: FROM ledger.events e ... e.type");

	/* the hash that stamps snapshots: of the normalized query */
#if PG_VERSION_NUM >= 150000
	{
		/* the same text whoever deparses: names quoted only as needed */
		bool		save_quote_all = quote_all_identifiers;

		quote_all_identifiers = false;
		PG_TRY();
		{
			normalized = pg_get_querydef(q, false);
		}
		PG_FINALLY();
		{
			quote_all_identifiers = save_quote_all;
		}
		PG_END_TRY();
	}
#else
	normalized = nodeToString(q->targetList);
#endif
	def->hash = text_to_cstring(DatumGetTextPP(DirectFunctionCall1(md5_text,
																   CStringGetTextDatum(normalized))));
	(void) user_functions_walker((Node *) q, &def->funcs);
	error_context_stack = errcb.previous;
	return def;
}

/*
 * ledger_projection_stamp -- what a snapshot of def's rows is stamped with,
 * as the catalogs stand now: def's hash, and, when the query calls
 * user-defined functions, their definitions (pg_get_functiondef: language,
 * argument and result types, volatility, strictness, SET options, body),
 * so a snapshot stops matching once one of them is replaced.  The text
 * names no OIDs, so it survives a dump and restore.  A definition that
 * calls none keeps the plain hash.  A user-defined aggregate (only ever
 * inside a function's body) is stamped by name only.
 */
char *
ledger_projection_stamp(ProjectionDef *def)
{
	StringInfoData buf;
	ListCell   *lc;
	int			nest;

	if (def->funcs == NIL)
		return def->hash;

	/* deparsed the same way whoever asks */
	nest = ledger_push_fixed_search_path();
	(void) set_config_option("quote_all_identifiers", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	initStringInfo(&buf);
	appendStringInfoString(&buf, def->hash);
	foreach(lc, def->funcs)
	{
		Oid			fn = lfirst_oid(lc);
		HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
		char		kind = '\0';
		char	   *desc;

		if (HeapTupleIsValid(tp))
		{
			kind = ((Form_pg_proc) GETSTRUCT(tp))->prokind;
			ReleaseSysCache(tp);
		}
		if (kind == '\0')
			desc = psprintf("function %u, dropped", fn);
		else if (kind == PROKIND_AGGREGATE)
			desc = psprintf("aggregate %s", format_procedure_qualified(fn));
		else
			desc = TextDatumGetCString(DirectFunctionCall1(pg_get_functiondef,
														   ObjectIdGetDatum(fn)));
		appendStringInfo(&buf, "\n%zu:%s", strlen(desc), desc);
	}
	AtEOXact_GUC(true, nest);
	return text_to_cstring(DatumGetTextPP(DirectFunctionCall1(md5_text,
															  CStringGetTextDatum(buf.data))));
}

/*
 * ledger_projection_source -- the user's query over only the events that
 * satisfy cond (a restriction on ledger.events' columns).
 */
char *
ledger_projection_source(ProjectionDef *def, const char *cond)
{
	/* the newline ends a trailing -- comment of the user's text */
	return psprintf("%s(SELECT * FROM ledger.events WHERE %s) %s%s\n",
					def->prefix, cond, def->need_alias ? "AS events " : "",
					def->suffix);
}

/*
 * ledger_split_projection_name -- name read as an SQL name, [schema.]table,
 * by the identifier rules (unquoted parts fold to lower case), into *schema
 * (NULL when unqualified) and *table; false if it is not such a name.
 */
bool
ledger_split_projection_name(const char *name, char **schema, char **table)
{
	List	   *parts;

	if (!SplitIdentifierString(pstrdup(name), '.', &parts) ||
		list_length(parts) < 1 || list_length(parts) > 2)
		return false;
	*schema = list_length(parts) == 2 ? linitial(parts) : NULL;
	*table = llast(parts);
	return true;
}

/*
 * ledger_projection_columns -- "q.a, q.b, ..." (quoted), qualifier optional.
 */
char *
ledger_projection_columns(ProjectionDef *def, const char *qualifier)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < def->ncols; i++)
		appendStringInfo(&buf, "%s%s%s%s", i > 0 ? ", " : "",
						 qualifier ? qualifier : "", qualifier ? "." : "",
						 quote_identifier(def->colnames[i]));
	return buf.data;
}

/*
 * ledger_projection_fold_sql -- merge the aggregate of the events that
 * satisfy cond into target.  The rows go in in the order of their keys
 * (under the collations the table's key columns have), not in the
 * aggregate's hash order: two folds that touch the same keys lock their
 * rows in the same order, and do not deadlock.
 */
char *
ledger_projection_fold_sql(ProjectionDef *def, const char *target, const char *cond)
{
	StringInfoData buf;
	StringInfoData keys;
	char	   *cols = ledger_projection_columns(def, NULL);
	bool		first = true;
	int			i;

	initStringInfo(&keys);
	for (i = 0; i < def->ncols; i++)
		if (def->kinds[i] == PROJ_KEY)
			appendStringInfo(&keys, "%s%s", keys.len > 0 ? ", " : "",
							 quote_identifier(def->colnames[i]));
	initStringInfo(&buf);
	appendStringInfo(&buf, "INSERT INTO %s AS t (%s) SELECT %s FROM (%s) AS d (%s) ORDER BY %s"
					 " ON CONFLICT (%s) DO ",
					 target, cols, cols, ledger_projection_source(def, cond), cols,
					 keys.data, keys.data);
	first = true;
	for (i = 0; i < def->ncols; i++)
	{
		const char *c = quote_identifier(def->colnames[i]);

		if (def->kinds[i] == PROJ_KEY)
			continue;
		appendStringInfoString(&buf, first ? "UPDATE SET " : ", ");
		first = false;
		switch (def->kinds[i])
		{
			case PROJ_COUNT:
				appendStringInfo(&buf, "%s = t.%s OPERATOR(pg_catalog.+) EXCLUDED.%s", c, c, c);
				break;
			case PROJ_SUM:
				appendStringInfo(&buf, "%s = CASE WHEN t.%s IS NULL THEN EXCLUDED.%s"
								 " WHEN EXCLUDED.%s IS NULL THEN t.%s"
								 " ELSE t.%s OPERATOR(pg_catalog.+) EXCLUDED.%s END",
								 c, c, c, c, c, c, c);
				break;
			/*
			 * Not LEAST/GREATEST: min and max keep the later of two equal
			 * values (numeric 1.0 and 1.00, text equal under a
			 * nondeterministic collation), as their transition functions
			 * do, and NULL is no value.
			 */
			case PROJ_MIN:
				appendStringInfo(&buf, "%s = CASE WHEN EXCLUDED.%s IS NULL"
								 " OR t.%s OPERATOR(pg_catalog.<) EXCLUDED.%s"
								 " THEN t.%s ELSE EXCLUDED.%s END", c, c, c, c, c, c);
				break;
			case PROJ_MAX:
				appendStringInfo(&buf, "%s = CASE WHEN EXCLUDED.%s IS NULL"
								 " OR t.%s OPERATOR(pg_catalog.>) EXCLUDED.%s"
								 " THEN t.%s ELSE EXCLUDED.%s END", c, c, c, c, c, c);
				break;
			case PROJ_KEY:
				break;
		}
	}
	if (first)
		appendStringInfoString(&buf, "NOTHING");
	return buf.data;
}

/*
 * ledger_become -- act as role until ledger_restore_user; restricted like
 * REFRESH MATERIALIZED VIEW (no SET ROLE, no temporary objects) when running
 * user code.  An error restores the previous user on (sub)transaction abort.
 */
void
ledger_become(Oid role, bool restricted, LedgerUserSwitch *save)
{
	GetUserIdAndSecContext(&save->uid, &save->sec);
	SetUserIdAndSecContext(role, save->sec | SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
}

void
ledger_restore_user(LedgerUserSwitch *save)
{
	SetUserIdAndSecContext(save->uid, save->sec);
}

/*
 * ledger_table_owner -- the owner of schema.table, or InvalidOid when there
 * is no such table (ledger_check_owner reports that, when it matters).
 * Its OID goes to *relidp, if given.
 */
Oid
ledger_table_owner(const char *schema, const char *table, Oid *relidp)
{
	Oid			nsp = get_namespace_oid(schema, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(table, nsp) : InvalidOid;
	HeapTuple	tp;
	Oid			owner;

	if (relidp != NULL)
		*relidp = relid;
	if (!OidIsValid(relid))
		return InvalidOid;
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * ledger_check_owner -- refuse to maintain a projection whose table is gone
 * (ledger.guard_projection_tables stops DROP TABLE, but not everything: a
 * rename, or a drop with the event trigger disabled).
 */
void
ledger_check_owner(Oid owner, const char *projection, const char *target)
{
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of projection \"%s\" does not exist", target, projection),
				 errhint("Give the table its name back, or drop the projection with ledger.drop_projection().")));
}
