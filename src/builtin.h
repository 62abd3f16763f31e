/*-------------------------------------------------------------------------
 *
 * builtin.h
 *	  The built-in read models, seen as projections (verify, rebuild).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEDGER_BUILTIN_H
#define LEDGER_BUILTIN_H

typedef struct BuiltinModel BuiltinModel;

extern const BuiltinModel *ledger_builtin_lookup(const char *name);
extern const char *ledger_builtin_name(const BuiltinModel *m);
extern bool ledger_builtin_verify(const BuiltinModel *m);
extern bool ledger_compare_with_log(const char *name, const char *recompute, const char *cols,
									const char *keys, const char *live);
extern int64 ledger_builtin_rebuild(const BuiltinModel *m);

#endif							/* LEDGER_BUILTIN_H */
