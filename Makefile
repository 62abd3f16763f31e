# ledger_cqrs -- PGXS build.
#
# Two entry points do everything from a bare Debian 12 machine:
#   make demo   install PostgreSQL 15 if missing, build, install, run the demo
#   make test   the same setup, then regress, isolation and TAP suites
# Both delegate to test/harness.sh, which works before PostgreSQL exists; the
# PGXS part below is only included once pg_config and pgxs.mk are present.

EXTENSION = ledger_cqrs
MODULE_big = ledger_cqrs
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard sql/$(EXTENSION)--*.sql))

# pg_regress inputs in sql/ (the install scripts live there too, but are not tests)
REGRESS = $(filter-out $(EXTENSION)--%,$(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=output_iso --load-extension=$(EXTENSION)
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

PG_CPPFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
EXTRA_CLEAN = output_iso results regression.diffs regression.out tmp_check log

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
endif

.PHONY: test demo bench sanitize
test:
	bash test/harness.sh test
demo:
	bash test/harness.sh demo
bench:
	bash test/harness.sh bench
sanitize:
	bash test/harness.sh sanitize
