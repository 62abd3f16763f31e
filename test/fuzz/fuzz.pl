#!/usr/bin/env perl
# ---------------------------------------------------------------------------
#  ledger_cqrs fuzzer
#
#  usage: perl test/fuzz/fuzz.pl        (run by `make test` after TAP)
#
#  Against a running server (PGHOST/PGPORT/PGUSER as exported by
#  test/harness.sh, or libpq defaults), in a dedicated database (FUZZ_DB,
#  default ledger_fuzz, dropped and recreated), this throws random input at
#  ledger.post_entry, ledger.transfer, ledger.append_events, ledger.append
#  and ledger.create_projection for a bounded time:
#
#    FUZZ_SECONDS  wall-clock budget for the random phase (default 20)
#    FUZZ_SEED     seed of the generator (default 20261123); printed, so a
#                  failing run can be repeated exactly (given the same time)
#    FUZZ_DB       database to use (default ledger_fuzz)
#    FUZZ_KEEP_DB  1 = keep the database afterwards (default: drop on success)
#    PGBIN         directory of psql (default /usr/lib/postgresql/15/bin)
#
#  First the corpus (test/fuzz/corpus/*.json) is replayed, then random calls
#  follow: legs and events as JSON with nested arrays and objects, wrong
#  types, missing and duplicated keys, huge, tiny, negative and NaN-ish
#  numbers (as numbers and as strings), unicode, very long strings; random
#  SQL assembled from fragments for projections.  Each call goes through one
#  long-lived psql session and is judged by its SQLSTATE.
#
#  Invariants:
#    - every call succeeds or fails with a SQLSTATE of class 22, 23, 40, 42,
#      55 or 0A (create_projection also 3F000, for a name in a schema that
#      does not exist; a corpus entry may pin the exact SQLSTATE);
#    - the backend never dies: the fuzzing session and a watchdog session
#      opened at the start both survive, and the server accepts connections;
#    - a projection that create_projection accepted verifies against the log;
#    - at the end: every projection verifies (bool_and(verify_projection)),
#      every currency's trial balance balances, ledger.balances equals the
#      aggregation of the legs in the log, balance = credits - debits,
#      account_entries has one row per leg, flags hold, streams are gapless.
#
#  Output: a few statistics, the violations (the full SQL of each is written
#  to fuzz-failures-<seed>.sql in $LEDGER_TMP or /tmp), and finally
#      fuzz: N passed, M failed
#  (N = calls and checks that behaved, M = violations).  Exit status is 0
#  only if M = 0.
#
#  A corpus file is one JSON object:
#      {"call": "post_entry", "args": ["t-1", "[...legs...]", null],
#       "expect": "22023", "why": "..."}
#  args are SQL literal texts (or null) of the function's parameters in
#  order; "expect" (optional) is the exact SQLSTATE, or "ok".
# ---------------------------------------------------------------------------
use strict;
use warnings;
use utf8;
use IPC::Open3;
use IO::Select;
use IO::Handle;
use File::Basename qw(dirname);
use File::Spec;
use JSON::PP ();
use Time::HiRes qw(time);
use POSIX ();
use Encode ();

my $SECONDS = $ENV{FUZZ_SECONDS} // 20;
my $SEED    = $ENV{FUZZ_SEED}    // 20261123;
my $DB      = $ENV{FUZZ_DB}      // 'ledger_fuzz';
my $PGBIN   = $ENV{PGBIN}        // '/usr/lib/postgresql/15/bin';
my $PSQL    = -x "$PGBIN/psql" ? "$PGBIN/psql" : 'psql';
my $HERE    = dirname(File::Spec->rel2abs(__FILE__));
my $OUTDIR  = $ENV{LEDGER_TMP} && -d $ENV{LEDGER_TMP} ? $ENV{LEDGER_TMP} : '/tmp';
my $FAILFILE = "$OUTDIR/fuzz-failures-$SEED.sql";
my $CALL_TIMEOUT = 120;           # seconds one call may take before it is a hang

my %ALLOWED_CLASS = map { $_ => 1 } qw(22 23 40 42 55 0A);
# plus, per function, single SQLSTATEs that PostgreSQL itself raises for
# inputs the fuzzer makes on purpose
my %ALLOWED_EXTRA = (
    create_projection => { '3F000' => 1 },    # a name in a schema that does not exist
);

$| = 1;
binmode STDOUT, ':encoding(UTF-8)';
srand($SEED);

my ($passed, $failed) = (0, 0);
my @violations;
my %stats;            # "fn sqlstate" => count

print "fuzz: seed=$SEED seconds=$SECONDS database=$DB\n";

# ---------------------------------------------------------------------------
# psql helpers
# ---------------------------------------------------------------------------
sub psql_batch {
    # run SQL in a fresh psql (ON_ERROR_STOP); returns (exit code, output)
    my ($db, $sql) = @_;
    my $pid = open3(my $in, my $out, undef, $PSQL, '-X', '-q', '-A', '-t',
                    '-v', 'ON_ERROR_STOP=1', '-d', $db);
    binmode $in, ':encoding(UTF-8)';
    print $in $sql;
    close $in;
    local $/;
    my $text = <$out> // '';
    waitpid($pid, 0);
    return ($? >> 8, $text);
}

# A long-lived session: send SQL, get back (sqlstate, output) per statement.
package Session {
    sub new {
        my ($class, $db, $name) = @_;
        my $pid = IPC::Open3::open3(my $in, my $out, undef, $PSQL, '-X', '-q', '-A', '-t',
                                    '-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=terse', '-d', $db);
        binmode $in, ':encoding(UTF-8)';
        $in->autoflush(1);
        my $self = bless { pid => $pid, in => $in, out => $out, n => 0, name => $name,
                           sel => IO::Select->new($out), buf => '', dead => 0 }, $class;
        return $self;
    }
    sub run {
        # returns (sqlstate, output); sqlstate is undef if the session died,
        # 'HANG' if nothing came back in time
        my ($self, $sql) = @_;
        return (undef, 'session is dead') if $self->{dead};
        my $n = ++$self->{n};
        local $SIG{PIPE} = 'IGNORE';
        my $ok = print { $self->{in} } $sql, ";\n\\echo \@\@END $n :SQLSTATE\n";
        if (!$ok) { $self->{dead} = 1; return (undef, 'write failed'); }
        my $deadline = main::time() + $CALL_TIMEOUT;
        my $out = '';
        while (1) {
            if ($self->{buf} =~ s/\A(.*?)^\@\@END $n (\S+)\n//ms) {
                return ($2, Encode::decode('UTF-8', $out . $1));
            }
            my $left = $deadline - main::time();
            if ($left <= 0) { return ('HANG', Encode::decode('UTF-8', $out . $self->{buf})); }
            my @ready = $self->{sel}->can_read($left > 1 ? 1 : $left);
            next unless @ready;
            my $got = sysread($self->{out}, my $chunk, 65536);
            if (!$got) {
                $self->{dead} = 1;
                return (undef, Encode::decode('UTF-8', $out . $self->{buf}));
            }
            $self->{buf} .= $chunk;
            # keep memory bounded on huge outputs: only the tail matters
            if (length($self->{buf}) > 4_000_000 && $self->{buf} !~ /^\@\@END $n /m) {
                $out = substr($self->{buf}, 0, 2000) . "\n...[output truncated]...\n";
                $self->{buf} = substr($self->{buf}, -100_000);
            }
        }
    }
    sub close {
        my ($self) = @_;
        close $self->{in};
        waitpid($self->{pid}, 0);
    }
}

# ---------------------------------------------------------------------------
# Judging calls
# ---------------------------------------------------------------------------
open(my $FAILS, '>:encoding(UTF-8)', $FAILFILE) or die "cannot write $FAILFILE: $!";
print $FAILS "-- ledger_cqrs fuzz violations, seed $SEED\n";

sub short { my ($s, $n) = @_; $n //= 300; $s =~ s/\s+/ /g; return length($s) > $n ? substr($s, 0, $n) . '...' : $s; }

sub violation {
    my ($what, $sql, $out) = @_;
    $failed++;
    push @violations, "$what\n    sql: " . short($sql) . "\n    out: " . short($out // '', 400);
    print $FAILS "-- $what\n-- output: " . short($out // '', 2000) . "\n$sql;\n\n";
}

my $SESSION;
my $CRASHED = 0;

# run one call in the fuzzing session and judge it; returns the sqlstate
sub judge {
    my ($fn, $sql, $expect) = @_;
    my ($state, $out) = $SESSION->run($sql);
    if (!defined $state) {
        $CRASHED = 1;
        $stats{"$fn CRASH"}++;
        violation("backend or session died during $fn", $sql, $out);
        return undef;
    }
    $stats{"$fn $state"}++;
    if ($state eq 'HANG') {
        violation("$fn did not answer within ${CALL_TIMEOUT}s", $sql, $out);
        $CRASHED = 1;       # the session is unusable
        return undef;
    }
    if ($out =~ /server closed the connection|connection to server was lost|terminating connection/) {
        $CRASHED = 1;
        violation("connection lost during $fn", $sql, $out);
        return undef;
    }
    if (defined $expect) {
        my $want = $expect eq 'ok' ? '00000' : $expect;
        if ($state ne $want) {
            violation("$fn: expected $expect, got $state", $sql, $out);
            return $state;
        }
        $passed++;
        return $state;
    }
    if ($state eq '00000' || $ALLOWED_CLASS{substr($state, 0, 2)} || $ALLOWED_EXTRA{$fn}{$state}) {
        $passed++;
    } else {
        violation("$fn: SQLSTATE $state is not in the allowed classes", $sql, $out);
    }
    return $state;
}

# ---------------------------------------------------------------------------
# Random generation
# ---------------------------------------------------------------------------
sub rint { my ($n) = @_; return int(rand($n)); }
sub pick { return $_[rint(scalar @_)]; }
sub chance { return rand() < $_[0]; }

# SQL literal of a text, dollar-quoted with a tag that does not occur in it
sub lit {
    my ($s) = @_;
    return 'NULL' unless defined $s;
    $s =~ s/\x00//g;                    # SQL text cannot carry NUL
    my $tag;
    do { $tag = '$f' . rint(1_000_000) . '$' } while index($s, $tag) >= 0;
    return $tag . $s . $tag;
}

my @CHARS = (
    ('a' .. 'z'), ('A' .. 'Z'), ('0' .. '9'), ' ', '-', '_', ':', '.',
    "'", '"', '\\', ';', '%', '$', '(', ')', ',', '/', '*', '{', '}', '[', ']',
    "\t", "\n", "\r", "\x01", "\x1b", "\x7f",
    "\x{e9}", "\x{fc}", "\x{4e2d}", "\x{0301}", "\x{200b}", "\x{202e}", "\x{feff}",
    "\x{1F600}", "\x{1F4B0}", "\x{10348}", "\x{FFFD}",
);
my @WORDS = ('%s', '%n', '%x', '%1$s', "'; DROP TABLE ledger.events; --", '"; --', '$$', '$q$',
             ':var', '\\x41', 'NULL', 'null', 'account:alice', 'transfer:t-1', 'currency:USD');

sub rstring {
    my ($maxlen) = @_;
    $maxlen //= 12;
    my $r = rand();
    if ($r < 0.05) { return ''; }
    if ($r < 0.10) { return pick(@WORDS); }
    if ($r < 0.13) { return pick('x', "\x{1F600}", 'ab') x (100 + rint(400)); }   # long
    if ($r < 0.14) { return 'y' x (5000 + rint(20000)); }                          # very long
    my $len = 1 + rint($maxlen);
    return join('', map { chance(0.7) ? pick('a' .. 'z', '0' .. '9', '-') : pick(@CHARS) } 1 .. $len);
}

# JSON text of a string, with correct escaping (or, rarely, broken on purpose)
sub jstr {
    my ($s) = @_;
    if (chance(0.01)) { return '"' . $s . '"'; }         # raw: may be invalid JSON
    my $o = '';
    for my $c (split //, $s) {
        my $o_ = ord $c;
        if ($c eq '"') { $o .= '\\"'; }
        elsif ($c eq '\\') { $o .= '\\\\'; }
        elsif ($o_ < 0x20 || $o_ == 0x7f) { $o .= sprintf('\\u%04x', $o_); }
        elsif ($o_ > 0xFFFF && chance(0.3)) {            # as a surrogate pair
            my $v = $o_ - 0x10000;
            $o .= sprintf('\\u%04x\\u%04x', 0xD800 + ($v >> 10), 0xDC00 + ($v & 0x3FF));
        }
        else { $o .= $c; }
    }
    return '"' . $o . '"';
}

my @NUMBERS_VALID = ('1', '2', '5', '10', '100', '0.01', '0.5', '12.5', '1e3', '1E+2', '2.000E2',
                     '0.15', '1.5e-1', '1000000', '123456.78', '0.001', '1e-18', '3');
my @NUMBERS_EDGE = ('99999999999999999999999999999999999999', '999999999999999999999999999999999999.99',
                    '99999999999999999999999999999999999.999', '99999999999999999999.999999999999999999',
                    '1e36', '1e38', '1e35', '1e20', '1e-19', '1e37', '5e37',
                    '100000000000000000000000000000000000000', '0.000000000000000000000000001');
my @NUMBERS_BAD = ('0', '-0', '-0.0', '0e10', '0E-10', '-1', '-1e3', '-0.01', '1e400', '1e-400',
                   '1e131072', '1e-16383', '1e1000', '123456789012345678901234567890123456789012345',
                   '1.0000000000000000000000000000000000000000001', '1e-16384');
my @NUMBERS_INVALID = ('NaN', 'Infinity', '-Infinity', '01', '.5', '1.', '+1', '0x10', '1_000', '1e', '--1');

sub rnumber {
    my $r = rand();
    return pick(@NUMBERS_VALID) if $r < 0.55;
    return pick(@NUMBERS_EDGE) if $r < 0.70;
    return pick(@NUMBERS_BAD) if $r < 0.92;
    return pick(@NUMBERS_INVALID) if $r < 0.95;
    return (1 + rint(1000)) . '.' . rint(100);
}

sub rjson {
    my ($depth) = @_;
    $depth //= 0;
    my $r = rand();
    if ($depth > 4 || $r < 0.35) {
        my $k = rand();
        return 'null' if $k < 0.1;
        return pick('true', 'false') if $k < 0.2;
        return rnumber() if $k < 0.5;
        return jstr(pick(@NUMBERS_VALID, @NUMBERS_BAD, 'NaN', 'Infinity')) if $k < 0.6;
        return jstr(rstring());
    }
    if ($r < 0.65) {
        my $n = rint(chance(0.05) ? 60 : 5);
        return '[' . join(', ', map { rjson($depth + 1) } 1 .. $n) . ']';
    }
    if (chance(0.02)) {         # deeply nested, still below jsonb's limits
        my $d = 20 + rint(60);
        return ('[' x $d) . rjson(5) . (']' x $d);
    }
    my $n = rint(6);
    my @pairs = map { jstr(chance(0.3) ? pick('account', 'side', 'amount', 'currency', 'type', 'data', 'metadata') : rstring(6)) . ': ' . rjson($depth + 1) } 1 .. $n;
    push @pairs, $pairs[0] if @pairs && chance(0.2);          # a duplicate key
    return '{' . join(', ', @pairs) . '}';
}

# --- the ledger's world -----------------------------------------------------
my @CURRENCIES = (['USD', 2], ['EUR', 2], ['JPY', 0], ['BHD', 3], ['F18', 18], ['F0', 0]);
my @BAD_CURRENCIES = ('usd', 'XXX', 'EUR ', 'EURO_EURO_EURO', '', "\x{1F4B0}", "US'D", 'U%sD', 'jpy', 'F18 ');
my @HOSTILE_ACCOUNTS = ("o'brien", '"quoted"', 'semi;colon; DROP TABLE ledger.events; --', '%s%n%x',
                        "ctl\x01\x1b\ttab", "\x{1F600}\x{1F4B0} four-byte", "caf\x{e9}", "cafe\x{301}",
                        'back\\slash \\x41', '  spaced  ', ("\x{1F600}" x 50));
my @ACCOUNTS = ((map { "acc$_" } 0 .. 19), @HOSTILE_ACCOUNTS);
my @FLAGGED  = ((map { "acc$_" } 0 .. 4), "o'brien");      # debits_must_not_exceed_credits
my @MIRROR   = (map { "acc$_" } 5 .. 7);                   # credits_must_not_exceed_debits
my @MISSING  = ('ghost', 'acc99', 'closed-acc', "\x{1F47B}", 'x' x 201, '', 'ACC0', 'acc0 ');
my $idn = 0;

sub raccount {
    my $r = rand();
    return pick(@ACCOUNTS) if $r < 0.85;
    return pick(@MISSING) if $r < 0.95;
    return rstring();
}

sub rcurrency {
    return chance(0.9) ? $CURRENCIES[rint(scalar @CURRENCIES)][0] : pick(@BAD_CURRENCIES);
}

sub scale_of { my ($c) = @_; for (@CURRENCIES) { return $_->[1] if $_->[0] eq $c } return 2; }

# a valid amount at the currency's scale
sub ramount {
    my ($scale) = @_;
    my $r = rand();
    if ($r < 0.03) {     # near the bound 10^(38 - scale)
        my $ip = '9' x (38 - $scale);
        return $scale ? $ip . '.' . ('9' x $scale) : $ip;
    }
    my $units = 1 + rint(chance(0.8) ? 100000 : 1_000_000_000);
    return $units unless $scale;
    my $s = sprintf('%d', $units);
    $s = ('0' x ($scale + 1 - length $s)) . $s if length($s) <= $scale;
    return substr($s, 0, length($s) - $scale) . '.' . substr($s, -$scale);
}

sub leg_json {
    my (%l) = @_;
    my @keys = grep { exists $l{$_} } qw(account side amount currency);
    my @pairs;
    for my $k (@keys) {
        my $v = $l{$k};
        push @pairs, jstr($k) . ': ' . ($k eq 'amount' ? $v : (defined $v && $v =~ /^\x00RAW(.*)$/s ? $1 : jstr($v)));
    }
    push @pairs, @{ $l{extra} } if $l{extra};
    @pairs = reverse @pairs if chance(0.2);
    return '{' . join(', ', @pairs) . '}';
}

# balanced legs over distinct accounts, most of which exist
sub balanced_legs {
    my @legs;
    my %used;
    for my $ci (1 .. (chance(0.7) ? 1 : 1 + rint(3))) {
        my $c = rcurrency();
        my $s = scale_of($c);
        my $nd = 1 + rint(chance(0.9) ? 2 : 6);
        my $nc = 1 + rint(chance(0.9) ? 2 : 6);
        # integer units so that the sums are exact
        my @d = map { 1 + rint(chance(0.9) ? 10000 : 10**9) } 1 .. $nd;
        my $total = 0; $total += $_ for @d;
        my @c;
        my $left = $total;
        for my $i (1 .. $nc - 1) {
            my $x = 1 + rint($left > 1 ? $left - 1 : 1);
            $x = $left if $x > $left;
            push @c, $x;
            $left -= $x;
        }
        push @c, $left;
        my $fmt = sub { my $u = shift; return $u unless $s; my $v = sprintf('%d', $u); $v = ('0' x ($s + 1 - length $v)) . $v if length($v) <= $s; return substr($v, 0, length($v) - $s) . '.' . substr($v, -$s); };
        for my $side (['debit', \@d], ['credit', \@c]) {
            for my $u (@{ $side->[1] }) {
                next if $u <= 0;
                my $a;
                for (1 .. 10) { $a = raccount(); last unless $used{"$a\0$c"}; }
                $used{"$a\0$c"} = 1;
                push @legs, { account => $a, side => $side->[0], amount => $fmt->($u), currency => $c };
            }
        }
    }
    return @legs;
}

sub random_legs_text {
    my $r = rand();
    return rjson() if $r < 0.05;                              # anything at all
    return pick('[]', '{}', 'null', '"legs"', '[[]]', '[{}, {}]', '[1, 2]', '[null, null]') if $r < 0.08;
    my @legs;
    if (chance(0.6)) {
        @legs = balanced_legs();
    } else {
        for (1 .. rint(chance(0.95) ? 6 : 40)) {
            my $c = rcurrency();
            push @legs, { account => raccount(), side => pick('debit', 'credit'), amount => (chance(0.7) ? ramount(scale_of($c)) : rnumber()), currency => $c };
        }
    }
    if (chance(0.01)) {     # over the cap of 1000 legs
        my $n = 1001 + rint(200);
        @legs = map { { account => "acc" . ($_ % 20), side => ($_ % 2 ? 'debit' : 'credit'), amount => '1', currency => "C$_" } } 1 .. $n;
    }
    # mutations
    for (1 .. (chance(0.5) ? 0 : 1 + rint(2))) {
        last unless @legs;
        my $l = $legs[rint(scalar @legs)];
        my $m = rint(14);
        if    ($m == 0) { delete $l->{pick(qw(account side amount currency))}; }
        elsif ($m == 1) { $l->{amount} = jstr(rnumber()); }                                  # number as string
        elsif ($m == 2) { $l->{amount} = rnumber(); }
        elsif ($m == 3) { $l->{side} = pick('DEBIT', 'Credit', 'both', '', 'debit ', '%s', "d\x{e9}bit"); }
        elsif ($m == 4) { $l->{account} = "\x00RAW" . rjson(2); }                             # wrong type
        elsif ($m == 5) { $l->{currency} = "\x00RAW" . pick('840', 'null', '["USD"]', '{"code": "USD"}', 'true'); }
        elsif ($m == 6) { $l->{extra} = [jstr('account') . ': ' . jstr(raccount())]; }          # duplicated key
        elsif ($m == 7) { $l->{extra} = [jstr(rstring(5)) . ': ' . rjson(2)]; }                 # unknown key
        elsif ($m == 8) { push @legs, { %$l }; }                                                # duplicated leg
        elsif ($m == 9) { $l->{amount} = rjson(3); }
        elsif ($m == 10) { $l->{currency} = pick(@BAD_CURRENCIES); }
        elsif ($m == 11) { $l->{side} = "\x00RAW" . pick('1', 'true', 'null', '["debit"]'); }
        elsif ($m == 12) { $l->{account} = pick(@MISSING); }
        else { $legs[rint(scalar @legs)] = { raw => rjson(2) }; }
    }
    my $text = '[' . join(', ', map { $_->{raw} // leg_json(%$_) } @legs) . ']';
    $text = '{"legs": ' . $text . '}' if chance(0.01);
    $text = '[' . $text . ']' if chance(0.01);
    return $text;
}

sub rid {
    $idn++;
    my $r = rand();
    return "fz-$idn" if $r < 0.7;
    return 'fz-' . int(rand($idn)) if $r < 0.8;              # often an earlier id: idempotency, 23505
    return rstring() . "-$idn" if $r < 0.97;
    return pick('', 'x' x 201, "\x{1F600}" x 51, undef);
}

sub rmetadata {
    my $r = rand();
    return undef if $r < 0.1;
    return '{}' if $r < 0.5;
    return rjson(1);
}

sub call_post_entry {
    my $sql = sprintf('SELECT ledger.post_entry(%s, %s::jsonb, %s::jsonb)',
                      lit(rid()), lit(random_legs_text()), lit(rmetadata()));
    judge('post_entry', $sql);
}

sub call_transfer {
    my $c = rcurrency();
    my $amount = chance(0.75) ? ramount(scale_of($c)) : pick(rnumber(), 'NaN', 'Infinity', '-Infinity', '-0', '1e3', ' 12 ', '1,5', 'abc', '');
    my $d = raccount();
    my $cr = chance(0.05) ? $d : raccount();
    my $sql = sprintf('SELECT ledger.transfer(%s, %s, %s, %s::numeric, %s, %s::jsonb)',
                      lit(rid()), lit($d), lit($cr), lit($amount), lit($c), lit(rmetadata()));
    judge('transfer', $sql);
}

my @RESERVED = ('CurrencyRegistered', 'AccountOpened', 'AccountClosed', 'TransferPosted');
sub rtype {
    my $r = rand();
    return pick('Created', 'Changed', 'PageViewed', 'OrderPlaced') if $r < 0.6;
    return pick(@RESERVED) if $r < 0.65;
    return 't' x (250 + rint(10)) if $r < 0.68;
    return "\x{1F600}" x (60 + rint(8)) if $r < 0.70;
    return rstring();
}

sub rstream {
    my $r = rand();
    return 'stream-' . rint(30) if $r < 0.6;
    return pick('account:acc0', 'transfer:fz-1', 'currency:USD', 'account:' . pick(@HOSTILE_ACCOUNTS)) if $r < 0.7;
    return 's' x (250 + rint(10)) if $r < 0.73;
    return rstring();
}

sub random_events_text {
    my $r = rand();
    return rjson() if $r < 0.05;
    return pick('[]', '{}', 'null', '"events"', '[[]]', '[null]', '[1]', '[{}]') if $r < 0.1;
    my @ev;
    for (1 .. (chance(0.95) ? 1 + rint(5) : 50 + rint(150))) {
        my @pairs;
        push @pairs, '"type": ' . (chance(0.93) ? jstr(rtype()) : pick('7', 'null', 'true', '["T"]', '{"t": 1}')) if chance(0.95);
        push @pairs, '"data": ' . (chance(0.5) ? '{"n": ' . rint(100) . ', "k": ' . jstr(rstring(5)) . '}' : rjson(1)) if chance(0.85);
        push @pairs, '"metadata": ' . (chance(0.5) ? '{}' : rjson(1)) if chance(0.4);
        push @pairs, jstr(rstring(4)) . ': ' . rjson(2) if chance(0.1);
        push @pairs, $pairs[0] if @pairs && chance(0.05);
        @pairs = reverse @pairs if chance(0.3);
        push @ev, chance(0.97) ? '{' . join(', ', @pairs) . '}' : rjson(2);
    }
    return '[' . join(', ', @ev) . ']';
}

sub rexpected {
    my $r = rand();
    return undef if $r < 0.75;
    return pick('0', '1', '2', '5', '-1', '9223372036854775807', '-9223372036854775808');
}

sub call_append_events {
    my $sql = sprintf('SELECT ledger.append_events(%s, %s::jsonb, %s::bigint)',
                      lit(rstream()), lit(random_events_text()), lit(rexpected()));
    judge('append_events', $sql);
}

sub call_append {
    my $data = chance(0.9) ? rjson() : pick('{"unterminated": ', 'not json', "{\"a\": \"\\u0000\"}", '');
    my $sql = sprintf('SELECT ledger.append(%s, %s, %s::jsonb, %s::bigint, %s::jsonb)',
                      lit(chance(0.97) ? rstream() : undef), lit(chance(0.97) ? rtype() : undef),
                      lit($data), lit(rexpected()), lit(rmetadata()));
    judge('append', $sql);
}

sub call_misc {
    my $r = rand();
    my $sql;
    if ($r < 0.4) {
        $sql = sprintf('SELECT ledger.open_account(%s, %s::text[], %s::jsonb)', lit(rid() // 'x'),
                       lit(pick('{}', '{}', '{debits_must_not_exceed_credits}', '{credits_must_not_exceed_debits}',
                                '{debits_must_not_exceed_credits,credits_must_not_exceed_debits}', '{bogus}', '{NULL}', '{{a}}')),
                       lit(rmetadata()));
        judge('open_account', $sql);
    } elsif ($r < 0.7) {
        $sql = sprintf('SELECT ledger.register_currency(%s, %s::integer)', lit(pick(rstring(14), 'USD', 'ZZZ', 'Q' . rint(100))),
                       lit(pick('0', '2', '18', '19', '-1', '2147483647', 'NULL')));
        judge('register_currency', $sql);
    } else {
        $sql = sprintf('SELECT ledger.close_account(%s)', lit(raccount()));
        judge('close_account', $sql);
    }
}

# --- projections ------------------------------------------------------------
my @PKEYS_OK = ('type', 'stream', "data->>'k'", "e.data->>'k'", 'version % 3', 'length(stream)', 'upper(type)',
                "metadata->>'who'", "(data->>'n')::numeric", "(data->>'n')::int", "data->'k'",
                "l->>'currency'", "l->>'side'", "l->>'account'", 'e.type', "coalesce(data->>'k', '')",
                "left(stream, 3)", "stream || '!'", "type = 'Created'");
my @PKEYS_BAD = ('now()', 'random()', '(SELECT 1)', 'e', 'xmin', 'tx_order', 'recorded_at::date',
                 "recorded_at::text", 'e.*', "pg_sleep(1)", "current_user", "nextval('ledger.events_position_seq')",
                 "'x'", '1', 'data', 'l', "txid_current()");
my @AGGS_OK  = ('count(*)', 'sum(version)', 'min(position)', 'max(position)', "max(data->>'k')",
                "sum((data->>'n')::numeric)", "sum((l->>'amount')::numeric)", 'count(type)', 'min(recorded_at)',
                "max(l->>'account')", 'sum(1)', "count(*) FILTER (WHERE type = 'Created')", 'max(version) ');
my @AGGS_BAD = ('avg(version)', "string_agg(type, ',')", 'count(DISTINCT type)', 'rank() OVER ()', 'max(position) + 1',
                'array_agg(type)', 'sum(version) OVER ()', "jsonb_agg(data)", 'bool_and(true)', "percentile_cont(0.5) WITHIN GROUP (ORDER BY version)",
                'count(*) * 2', 'max(now())');
my @FROMS_OK = ('ledger.events e', 'ledger.events', 'ledger.events AS e',
                "ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') l",
                "ledger.events e CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(e.data->'legs') = 'array' THEN e.data->'legs' ELSE '[]' END) l",
                '"ledger"."events" e', 'ledger . events e');
my @FROMS_BAD = ('ledger.events e JOIN ledger.accounts a ON true', '(SELECT * FROM ledger.events) e', 'ledger.balances',
                 'pg_class', 'ledger.events e, ledger.events f', 'ONLY ledger.events e', 'ledger.events e, generate_series(1, 3) g',
                 "ledger.events e, LATERAL (SELECT 1) x", 'ledger.events TABLESAMPLE SYSTEM (50) e', 'ledger.events e FOR UPDATE');
my @WHERES = ('', '', '', "type = 'Created'", "e.type = 'TransferPosted'", 'version > 1', "data ? 'k'", "stream LIKE 'stream-%'",
              "type <> 'x; DROP TABLE ledger.events; --'", "type <> \$\$'); DROP TABLE ledger.events; --\$\$",
              'random() < 0.5', 'position IN (SELECT 1)', "type = current_user", "recorded_at < now()",
              "jsonb_typeof(data) = 'object'", "(data->>'n')::int > 3", "position % 2 = 0");
my @TAILS = ('', '', '', '', ';', ' -- trailing', ' /* c */', '; DROP TABLE ledger.events', ' LIMIT 1', ' ORDER BY 1',
             ' HAVING count(*) > 1', ' /*', ')', "'", ' UNION ALL SELECT 1, 2', ' FOR UPDATE', "\n");
my $pn = 0;
my @LIVE;         # random projections currently registered: [name, async]

sub random_projection_query {
    my $valid = chance(0.5);
    my @keys = map { $valid || chance(0.8) ? pick(@PKEYS_OK) : pick(@PKEYS_BAD) } 1 .. 1 + rint(2);
    my $from = $valid || chance(0.7) ? pick(@FROMS_OK) : pick(@FROMS_BAD);
    if ($from !~ / l$/ && grep { /\bl->/ } @keys) { $from = "ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') l" if $valid; }
    my @aggs = map { $valid || chance(0.8) ? pick(@AGGS_OK) : pick(@AGGS_BAD) } 1 .. 1 + rint(3);
    my @cols;
    my $i = 0;
    # an alias, numbered to keep the names distinct (inside the quotes)
    my $alias = sub { my $a = shift; $i++; return $a =~ /^"(.*)"$/s ? qq{"$1$i"} : "$a$i"; };
    push @cols, map { $_ . ' AS ' . ($valid || chance(0.9) ? $alias->(pick('k', '"Key"', '"k; DROP TABLE ledger.events; --"', 'kk', '"%s"')) : '') } @keys;
    push @cols, map { $_ . ' AS ' . ($valid || chance(0.9) ? $alias->(pick('n', '"N"', '"n\'); --"', 'total', '"%n"')) : '') } @aggs;
    @cols = reverse @cols if chance(0.1);
    my $where = $valid && chance(0.7) ? '' : pick(@WHERES);
    my $group = $valid || chance(0.8) ? ' GROUP BY ' . join(', ', $valid && chance(0.5) ? (1 .. scalar @keys) : @keys) : '';
    $group = ' GROUP BY ROLLUP (' . join(', ', @keys) . ')' if !$valid && chance(0.05);
    my $q = 'SELECT ' . join(', ', @cols) . ' FROM ' . $from . ($where ? " WHERE $where" : '') . $group
          . ($valid ? '' : pick(@TAILS));
    $q = pick('', ';', 'SELECT', 'DROP TABLE ledger.events', 'TABLE ledger.events', 'VALUES (1)',
              'WITH x AS (DELETE FROM ledger.balances RETURNING 1) SELECT 1 AS k, count(*) AS n FROM ledger.events GROUP BY 1',
              'EXPLAIN SELECT type, count(*) AS n FROM ledger.events GROUP BY type', rstring(40)) if chance(0.05);
    return $q;
}

sub random_projection_name {
    $pn++;
    my $r = rand();
    return "fz_p$pn" if $r < 0.6;
    return "fuzz_schema.fz_p$pn" if $r < 0.7;
    return qq{"fz $pn ' ; -- \x{1F600}"} if $r < 0.8;
    return ('l' x 60) . "_$pn" . ('m' x 10) if $r < 0.85;
    return pick('x; DROP TABLE ledger.events; --', 'a.b.c.d', '"unterminated', '', 'ledger.events',
                'ledger.balances', 'fz_p1', 'pg_catalog.fz', 'nosuchschema.fz', '"fz_p1"', rstring(10));
}

sub drop_random_projection {
    my ($p) = @_;
    my ($name, $async) = @$p;
    judge('catch_up', 'SELECT ledger.catch_up(' . lit($name) . ')') if $async;
    verify_one($name);
    judge('drop_projection', 'SELECT ledger.drop_projection(' . lit($name) . ')', 'ok');
}

sub verify_one {
    my ($name) = @_;
    my $sql = 'SELECT ledger.verify_projection(' . lit($name) . ') AS ok';
    my ($state, $out) = $SESSION->run($sql);
    if (!defined $state || $state eq 'HANG') { $CRASHED = 1; violation('session died during verify_projection', $sql, $out); return; }
    $stats{"verify_projection $state"}++;
    if ($state eq '00000') {
        if ($out =~ /^t$/m) { $passed++; }
        else {
            # a projection whose fold failed stops (async: state failed) and
            # is not expected to match
            my ($s2, $o2) = $SESSION->run('SELECT state FROM ledger.projection_status WHERE name = ' . lit($name));
            if (defined $o2 && $o2 =~ /^failed$/m) { $passed++; }
            else { violation("projection $name does not verify against the log", $sql, $out); }
        }
    } elsif ($ALLOWED_CLASS{substr($state, 0, 2)}) {
        $passed++;
    } else {
        violation("verify_projection: SQLSTATE $state is not in the allowed classes", $sql, $out);
    }
}

sub call_create_projection {
    my $name = random_projection_name();
    my $mode = chance(0.7) ? 'inline' : chance(0.9) ? 'async' : pick('INLINE', 'sync', '', 'inline; DROP TABLE ledger.events', undef);
    my $sql = sprintf('SELECT ledger.create_projection(%s, %s, %s)', lit($name), lit(random_projection_query()), lit($mode));
    my $state = judge('create_projection', $sql);
    print STDERR "[create_projection $state] $sql\n" if $ENV{FUZZ_DEBUG} && defined $state;
    return unless defined $state && $state eq '00000';
    my $async = ($mode // '') eq 'async';
    judge('catch_up', 'SELECT ledger.catch_up(' . lit($name) . ')') if $async;
    verify_one($name);
    push @LIVE, [$name, $async];
    drop_random_projection(shift @LIVE) while @LIVE > 2;
}

# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------
my ($rc, $out) = psql_batch('postgres', "DROP DATABASE IF EXISTS \"$DB\";\nCREATE DATABASE \"$DB\";\n");
die "fuzz: cannot create database $DB:\n$out" if $rc;

my $setup = <<'SQL';
SET client_min_messages = warning;
CREATE EXTENSION ledger_cqrs;
CREATE SCHEMA fuzz_schema;
SELECT ledger.register_currency('F18', 18);
SELECT ledger.register_currency('F0', 0);
SQL
for my $a (@ACCOUNTS) {
    my $flags = (grep { $_ eq $a } @FLAGGED) ? '{debits_must_not_exceed_credits}'
              : (grep { $_ eq $a } @MIRROR) ? '{credits_must_not_exceed_debits}' : '{}';
    $setup .= 'SELECT ledger.open_account(' . lit($a) . ", '$flags');\n";
}
$setup .= <<'SQL';
SELECT ledger.open_account('closed-acc');
SELECT ledger.close_account('closed-acc');
-- funding, so that flagged accounts can spend
SELECT ledger.transfer('fund-' || a || '-' || c, 'acc19', a, 1000000, c)
  FROM unnest(ARRAY['acc0', 'acc1', 'acc2', 'acc3', 'acc4']) a, unnest(ARRAY['USD', 'EUR', 'JPY', 'BHD', 'F18', 'F0']) c;
SELECT ledger.transfer('fund-m-' || a, a, 'acc19', 1000000, 'USD')
  FROM unnest(ARRAY['acc5', 'acc6', 'acc7']) a;
-- projections that every append folds (inline) or that catch up (async);
-- they accept any event
SELECT ledger.create_projection('fuzz_by_type', 'SELECT type, count(*) AS n, max(version) AS v, min(position) AS p FROM ledger.events e GROUP BY type');
SELECT ledger.create_projection('fuzz_legs', $$SELECT l->>'currency' AS currency, l->>'side' AS side, sum((l->>'amount')::numeric) AS total, count(*) AS n
    FROM ledger.events e, LATERAL jsonb_array_elements(e.data->'legs') l WHERE e.type = 'TransferPosted' GROUP BY 1, 2$$);
SELECT ledger.create_projection('fuzz_schema.by_stream', 'SELECT stream, max(version) AS v, count(*) AS n FROM ledger.events e GROUP BY stream', 'async');
SELECT ledger.create_projection('fuzz_schema.by_key', $$SELECT data->>'k' AS k, count(*) AS n, max(version) AS mx FROM ledger.events e WHERE jsonb_typeof(data) = 'object' AND data ? 'k' GROUP BY 1$$);
SQL
($rc, $out) = psql_batch($DB, $setup);
die "fuzz: setup failed:\n$out" if $rc;

# where the server log stands, to look at what the run adds to it
my $SERVER_LOG = $ENV{LEDGER_TMP} ? "$ENV{LEDGER_TMP}/server.log" : undef;
my $LOG_START = $SERVER_LOG && -f $SERVER_LOG ? -s $SERVER_LOG : 0;

# the watchdog: a session that only has to survive
my $WATCHDOG = Session->new($DB, 'watchdog');
my ($wstate, $wout) = $WATCHDOG->run('SELECT pg_backend_pid()');
die "fuzz: cannot open the watchdog session: $wout" unless defined $wstate && $wstate eq '00000';

$SESSION = Session->new($DB, 'fuzz');
$SESSION->run('SET statement_timeout = ' . ($CALL_TIMEOUT * 1000 - 5000));

# ---------------------------------------------------------------------------
# 1. Corpus
# ---------------------------------------------------------------------------
my %SIGNATURES = (
    post_entry        => [qw(text jsonb jsonb)],
    transfer          => [qw(text text text numeric text jsonb)],
    append_events     => [qw(text jsonb bigint)],
    append            => [qw(text text jsonb bigint jsonb)],
    create_projection => [qw(text text text)],
    open_account      => ['text', 'text[]', 'jsonb'],
    register_currency => [qw(text integer)],
    close_account     => [qw(text)],
);
my @corpus = sort glob("$HERE/corpus/*.json");
my $json = JSON::PP->new->utf8;
my $ncorpus = 0;
for my $file (@corpus) {
    last if $CRASHED;
    my $text = do { local $/; open(my $fh, '<:raw', $file) or die "$file: $!"; <$fh> };
    my $c = eval { $json->decode($text) };
    if (!$c || !$SIGNATURES{ $c->{call} // '' } || ref $c->{args} ne 'ARRAY'
        || @{ $c->{args} } > @{ $SIGNATURES{ $c->{call} } }) {
        $failed++;
        push @violations, "corpus file $file is malformed (" . ($@ || 'bad call or args') . ')';
        next;
    }
    my @types = @{ $SIGNATURES{ $c->{call} } };
    my @args = map { lit($c->{args}[$_]) . '::' . $types[$_] } 0 .. $#{ $c->{args} };
    my $sql = "SELECT ledger.$c->{call}(" . join(', ', @args) . ')';
    my $state = judge("corpus:$c->{call}", $sql, $c->{expect});
    $ncorpus++;
    if (defined $state && $state eq '00000' && $c->{call} eq 'create_projection') {
        verify_one($c->{args}[0]);
        judge('drop_projection', 'SELECT ledger.drop_projection(' . lit($c->{args}[0]) . ')', 'ok');
    }
}
print "fuzz: replayed $ncorpus corpus input(s)\n";

# ---------------------------------------------------------------------------
# 2. Random calls, for FUZZ_SECONDS
# ---------------------------------------------------------------------------
my $t0 = time();
my $ncalls = 0;
while (!$CRASHED && time() - $t0 < $SECONDS) {
    my $r = rand();
    if    ($r < 0.35) { call_post_entry(); }
    elsif ($r < 0.55) { call_transfer(); }
    elsif ($r < 0.73) { call_append_events(); }
    elsif ($r < 0.83) { call_append(); }
    elsif ($r < 0.93) { call_create_projection(); }
    else              { call_misc(); }
    $ncalls++;
}
my $elapsed = time() - $t0;
printf "fuzz: %d random call(s) in %.1fs\n", $ncalls, $elapsed;
drop_random_projection(shift @LIVE) while !$CRASHED && @LIVE;

# ---------------------------------------------------------------------------
# 3. Invariants
# ---------------------------------------------------------------------------
sub check {
    my ($what, $session, $sql) = @_;
    my ($state, $out) = $session->run($sql);
    if (defined $state && $state eq '00000' && $out =~ /^t$/m) { $passed++; return 1; }
    $failed++;
    push @violations, "invariant failed: $what\n    sql: " . short($sql) . "\n    out: " . short($out // '(session died)', 400);
    print $FAILS "-- invariant failed: $what\n-- output: " . short($out // '', 2000) . "\n$sql;\n\n";
    return 0;
}

my ($ws, $wo) = $WATCHDOG->run('SELECT 1');
if (defined $ws && $ws eq '00000') { $passed++; }
else {
    $failed++;
    push @violations, "the watchdog session opened at the start did not survive (a backend crashed and the server restarted?)";
}
$WATCHDOG->close;
$SESSION->close unless $SESSION->{dead};

my $final = Session->new($DB, 'final');
my ($fs, $fo) = $final->run('SELECT 1');
if (!defined $fs || $fs ne '00000') {
    $failed++;
    push @violations, "the server does not accept connections after the run: " . short($fo // '', 400);
} else {
    $passed++;
    $final->run('SET statement_timeout = 0');
    $final->run('SELECT ledger.catch_up()');
    check('every projection verifies against the log', $final,
          'SELECT bool_and(ledger.verify_projection(name)) FROM ledger.projection_status');
    check('no projection failed', $final,
          "SELECT NOT EXISTS (SELECT FROM ledger.projection_status WHERE state = 'failed')");
    check('every currency balances (trial balance)', $final,
          'SELECT coalesce(bool_and(debits = credits), true) FROM ledger.currency_totals');
    check('balances equal the aggregation of the legs in the log', $final, <<'SQL');
WITH legs AS (
    SELECT l->>'account' AS account, l->>'currency' AS currency, l->>'side' AS side, (l->>'amount')::numeric AS amount
      FROM ledger.events e, jsonb_array_elements(e.data->'legs') l WHERE e.type = 'TransferPosted'),
agg AS (
    SELECT account, currency, coalesce(sum(amount) FILTER (WHERE side = 'debit'), 0) AS d,
           coalesce(sum(amount) FILTER (WHERE side = 'credit'), 0) AS c, count(*) AS n
      FROM legs GROUP BY account, currency)
SELECT NOT EXISTS (SELECT account, currency, d, c, n FROM agg
                   EXCEPT SELECT account, currency, debits_posted, credits_posted, postings FROM ledger.balances)
   AND NOT EXISTS (SELECT account, currency, debits_posted, credits_posted, postings FROM ledger.balances
                   EXCEPT SELECT account, currency, d, c, n FROM agg)
   AND (SELECT count(*) FROM ledger.account_entries) = (SELECT count(*) FROM legs)
SQL
    check('balance = credits_posted - debits_posted', $final,
          'SELECT coalesce(bool_and(balance = credits_posted - debits_posted), true) FROM ledger.balances');
    check('flags hold', $final, <<'SQL');
SELECT NOT EXISTS (SELECT FROM ledger.balances b JOIN ledger.accounts a USING (account)
                    WHERE ('debits_must_not_exceed_credits' = ANY (a.flags) AND b.balance < 0)
                       OR ('credits_must_not_exceed_debits' = ANY (a.flags) AND b.balance > 0))
SQL
    check('totals stay below 10^(38 - scale)', $final, <<'SQL');
SELECT NOT EXISTS (SELECT FROM ledger.balances b JOIN ledger.currencies c ON c.code = b.currency
                    WHERE greatest(b.debits_posted, b.credits_posted) >= 10::numeric ^ (38 - c.scale))
SQL
    check('every stream is gapless from version 1', $final,
          'SELECT coalesce(bool_and(n = v), true) FROM (SELECT stream, count(*) AS n, max(version) AS v FROM ledger.events GROUP BY stream) s');
    check('every running balance is right', $final, <<'SQL');
SELECT NOT EXISTS (
    SELECT FROM (SELECT balance_after, sum(CASE side WHEN 'credit' THEN amount ELSE -amount END)
                        OVER (PARTITION BY account, currency ORDER BY position) AS running
                   FROM ledger.account_entries) x
     WHERE balance_after <> running)
SQL
    my ($ss, $so) = $final->run('SELECT count(*) FROM ledger.events');
    chomp($so) if defined $so;
    print "fuzz: the log holds " . ($so // '?') . " events\n";
    $final->close;
}

# a crash leaves its trace in the server log, if we know where it is
if ($SERVER_LOG && -f $SERVER_LOG && open(my $log, '<', $SERVER_LOG)) {
    seek($log, $LOG_START, 0);
    my @bad = grep { /terminated by signal (?:4|6|7|8|11)\b|PANIC:|TRAP:/ } <$log>;
    if (@bad) {
        $failed++;
        push @violations, "the server log reports a crash during the run:\n    " . join('    ', @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
    }
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
my %by_state;
for my $k (keys %stats) { my ($fn, $st) = split / /, $k; $by_state{$st} += $stats{$k}; }
print "fuzz: outcomes by SQLSTATE: " . join(', ', map { "$_=$by_state{$_}" } sort keys %by_state) . "\n";
for my $fn (qw(post_entry transfer append_events append create_projection)) {
    my @s = map { my ($f, $st) = split / /; $f eq $fn ? "$st=$stats{$_}" : () } sort keys %stats;
    print "fuzz:   $fn: " . join(', ', @s) . "\n" if @s;
}
close $FAILS;
if (@violations) {
    print "fuzz: VIOLATIONS (full SQL in $FAILFILE):\n";
    my $i = 0;
    for my $v (@violations) {
        last if ++$i > 20;
        print "  - $v\n";
    }
    print "  ... and " . (@violations - 20) . " more\n" if @violations > 20;
    print "fuzz: kept database $DB for inspection\n";
} else {
    unlink $FAILFILE;
    if (!$ENV{FUZZ_KEEP_DB}) {
        my ($drc, $dout) = psql_batch('postgres', "DROP DATABASE IF EXISTS \"$DB\";\n");
        print "fuzz: could not drop database $DB: $dout" if $drc;
    }
}
print "fuzz: $passed passed, $failed failed\n";
exit($failed ? 1 : 0);
