/*-------------------------------------------------------------------------
 *
 * projection.h
 *	  User-defined projections: definitions, the registry cache, folding
 *	  event batches, catch-up and the projector worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEDGER_PROJECTION_H
#define LEDGER_PROJECTION_H

#include "access/transam.h"
#include "executor/spi.h"

typedef enum ProjColumnKind
{
	PROJ_KEY,
	PROJ_COUNT,
	PROJ_SUM,
	PROJ_MIN,
	PROJ_MAX
} ProjColumnKind;

/* A parsed and validated definition. */
typedef struct ProjectionDef
{
	char	   *query;			/* verbatim */
	int			ncols;
	char	  **colnames;
	ProjColumnKind *kinds;
	Oid		   *coltypes;
	int32	   *coltypmods;
	Oid		   *colcollations;
	char	   *prefix;			/* query text before the ledger.events reference */
	char	   *suffix;			/* ... and after it */
	bool		need_alias;		/* the reference had no alias */
	char	   *hash;			/* md5 of the normalized definition */
	List	   *funcs;			/* OIDs of the user-defined functions it calls */
} ProjectionDef;

/* A registered user projection, as cached by a backend. */
typedef struct Projection
{
	char	   *name;
	bool		async;
	char		state;			/* 'c'atching_up, 'l'ive, 'r'ebuilding, 'f'ailed */
	char	   *target;			/* quoted schema.table */
	Oid			owner;			/* of the table: folds run as this role */
	Oid			relid;			/* the table, as last looked up */
	char	   *definition;		/* the query, verbatim */
	ProjectionDef *def;			/* parsed on first use: ledger_projection_def */
	SPIPlanPtr	inline_plan;	/* fold of position = ANY($1) */
} Projection;

/* Batch restrictions on ledger.events, with their parameters. */
#define PROJ_COND_POSITIONS "position OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[])"
#define PROJ_COND_RANGE \
	"ROW(tx_order, position) OPERATOR(pg_catalog.>) ROW($1::pg_catalog.xid8, $2::pg_catalog.int8)" \
	" AND ROW(tx_order, position) OPERATOR(pg_catalog.<=) ROW($3::pg_catalog.xid8, $4::pg_catalog.int8)"
#define PROJ_COND_AFTER \
	"ROW(tx_order, position) OPERATOR(pg_catalog.>) ROW($1::pg_catalog.xid8, $2::pg_catalog.int8)"
#define PROJ_COND_UPTO \
	"ROW(tx_order, position) OPERATOR(pg_catalog.<=) ROW($1::pg_catalog.xid8, $2::pg_catalog.int8)"

/* projdef.c */
extern ProjectionDef *ledger_parse_projection(const char *query);
extern char *ledger_projection_stamp(ProjectionDef *def);
extern char *ledger_projection_source(ProjectionDef *def, const char *cond);
extern char *ledger_projection_fold_sql(ProjectionDef *def, const char *target,
										const char *cond);
extern char *ledger_projection_columns(ProjectionDef *def, const char *qualifier);
extern bool ledger_split_projection_name(const char *name, char **schema, char **table);
extern int	ledger_push_fixed_search_path(void);

/*
 * User code in a projection runs as the owner of the projection's table,
 * restricted as REFRESH MATERIALIZED VIEW does, never as the extension.
 */
typedef struct LedgerUserSwitch
{
	Oid			uid;
	int			sec;
} LedgerUserSwitch;

extern void ledger_become(Oid role, bool restricted, LedgerUserSwitch *save);
extern void ledger_restore_user(LedgerUserSwitch *save);
extern Oid	ledger_table_owner(const char *schema, const char *table, Oid *relidp);
extern void ledger_check_owner(Oid owner, const char *projection, const char *target);

/* apply.c */
extern int	ledger_pin_projections(void);
extern void ledger_unpin_projections(int pins);
extern List *ledger_user_projections(void);
extern ProjectionDef *ledger_projection_def(Projection *p);
extern void ledger_projections_changed(void);
extern void ledger_apply_inline(int64 *positions, int n);
extern int64 ledger_fold_range(ProjectionDef *def, const char *target, Oid owner,
							   FullTransactionId from_order, int64 from_position,
							   FullTransactionId to_order, int64 to_position,
							   bool unbounded, int64 above_position);
extern void ledger_apply_init(void);

/* projection.c */
extern Oid	ledger_extension_owner(void);
extern int	ledger_projection_snapshot_interval;
extern bool ledger_take_projection_snapshot(const char *name, ProjectionDef *def,
											const char *target, Oid owner,
											FullTransactionId order,
											int64 position, int64 applied,
											bool position_cut);
extern void ledger_auto_snapshot_inline(void);

/* catchup.c */
extern bool ledger_error_is_transient(int sqlerrcode);
extern ErrorData *ledger_in_subxact(void (*fn) (void *arg), void *arg);
extern int64 ledger_catch_up_projection(const char *name, int64 max_events,
										bool allow_handover);
extern int64 ledger_catch_up_all(int64 max_events);
extern int	ledger_fill_batch_size;
extern int	ledger_fill_sync_limit;

/* worker.c */
extern void ledger_worker_init(void);
extern int	ledger_ensure_projector(void);
extern void ledger_note_async_work(void);

#endif							/* LEDGER_PROJECTION_H */
