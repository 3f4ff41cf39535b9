"""The hand-made mutants: each one's file, exact old text, new text, what leak it stands for, and
the tests to run against it; ``scripts/mutants.py run`` applies and runs them.

A mutant of SQL is aimed at a definition file (src/gateway/data/sql), where each function and
policy the database holds is defined once; ``declaration_errors`` says why a mutant would not
mutate what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = "src/gateway/data/sql"


@dataclass(frozen=True)
class Mutant:
    id: str
    area: str
    path: str
    old: str  # exact text, found exactly once in the file
    new: str
    why: str  # what a leak this mutant stands for
    tests: tuple[str, ...]


# Test selections, from the sharpest to the widest.
T_SQL_ALONE = ("tests/test_sql_predicates_alone.py", "tests/test_layers_alone.py")
T_RLS = ("tests/test_rls.py", "tests/test_rls_alone.py", "tests/test_layers_alone.py")
T_E2E = (
    "tests/test_field_check_alone.py",
    "tests/test_exitcheck.py",
    "tests/test_exitcheck_every_statement.py",
    "tests/test_routes_to_foreign_objects.py",
    "tests/test_roles.py",
    "tests/test_clinician.py",
    "tests/test_audit.py",
)
T_SQL = T_SQL_ALONE + T_RLS + T_E2E + ("tests/test_policy_matrix.py",)
T_TABLE = (  # not test_policy_doc.py: docs/POLICY.md follows any table change by construction
    "tests/test_field_check_alone.py",
    "tests/test_exitcheck.py",
    "tests/test_roles.py",
    "tests/test_clinician.py",
    "tests/test_schema.py",
    "tests/test_audit.py",
    "tests/test_policy_matrix.py",
)

MUTANTS: list[Mutant] = []


def mutant(
    id: str, area: str, path: str, old: str, new: str, why: str, tests: tuple[str, ...]
) -> None:
    MUTANTS.append(Mutant(id, area, path, old, new, why, tests))


# The SQL in force, one file per area (src/gateway/data/sql): each function and policy is
# defined there once, so a mutant of its text is a mutant of what the database runs.
S_VISIBILITY = f"{DEFINITIONS}/visibility.sql"  # layers 2 and 3: scope, api.grant_for, who is seen
S_LOADERS = f"{DEFINITIONS}/loaders.sql"  # the by-id loaders
S_PAGES = f"{DEFINITIONS}/pages.sql"  # the consultation and access-log pages
S_AUDIT = f"{DEFINITIONS}/audit.sql"  # the audit write, its chains and triggers
S_CONSENT = f"{DEFINITIONS}/consent.sql"  # consents, consent requests, break-glass
S_POLICIES = f"{DEFINITIONS}/policies.sql"  # the row-level security policies
TABLE = "src/gateway/policy/table.py"


def drop(id: str, area: str, path: str, old: str, new: str, why: str, tests=T_SQL) -> None:
    mutant(id, area, path, old, new, why, tests)


# --- layer 2: api.grant_for, the grant (and so the visibility) of every loaded row -------------
A = "sql: api.grant_for"
drop(
    "grant-own-any-patient",
    A,
    S_VISIBILITY,
    "where p_role = 'patient' and p_patient = p_actor",
    "where p_role = 'patient'",
    "a patient is granted every patient's rows as their own",
)
drop(
    "grant-conducted-any-clinician",
    A,
    S_VISIBILITY,
    "where p_role = 'clinician' and p_clinician = p_actor",
    "where p_role = 'clinician'",
    "a clinician is granted every consultation as conducted",
)
drop(
    "grant-break-glass-any-patient",
    A,
    S_VISIBILITY,
    "g.clinician_id = p_actor and g.patient_id = p_patient",
    "g.clinician_id = p_actor",
    "one break-glass grant opens every patient",
)
drop(
    "grant-break-glass-any-clinician",
    A,
    S_VISIBILITY,
    "where p_role = 'clinician' and g.clinician_id = p_actor and",
    "where p_role = 'clinician' and",
    "another clinician's break-glass grant opens the patient to every clinician",
)
drop(
    "grant-break-glass-revoked",
    A,
    S_VISIBILITY,
    "g.patient_id = p_patient\n          and g.revoked_at is null and now() < g.expires_at",
    "g.patient_id = p_patient\n          and now() < g.expires_at",
    "a revoked break-glass grant still opens the patient",
)
drop(
    "grant-break-glass-expired",
    A,
    S_VISIBILITY,
    "g.patient_id = p_patient\n          and g.revoked_at is null and now() < g.expires_at",
    "g.patient_id = p_patient\n          and g.revoked_at is null",
    "an expired break-glass grant still opens the patient",
)
drop(
    "grant-break-glass-first",
    A,
    S_VISIBILITY,
    "select 2, null, g.reason, 'break-glass'",
    "select 0, null, g.reason, 'break-glass'",
    "a conducting clinician's own consultation is read (and audited) under break-glass",
)
drop(
    "grant-support-recordings",
    A,
    S_VISIBILITY,
    "where p_role = 'support' and p_needs in ('patient/Consultation.rs', 'patient/Patient.rs')",
    "where p_role = 'support'",
    "support is granted recordings",
)
drop(
    "grant-consent-any-partner",
    A,
    S_VISIBILITY,
    "where p_role = 'partner' and k.partner_id = p_actor and",
    "where p_role = 'partner' and",
    "a consent to one partner grants every partner",
)
drop(
    "grant-consent-any-patient",
    A,
    S_VISIBILITY,
    "k.partner_id = p_actor and k.patient_id = p_patient",
    "k.partner_id = p_actor",
    "one consent grants the partner every patient",
)
drop(
    "grant-consent-revoked",
    A,
    S_VISIBILITY,
    "k.patient_id = p_patient\n          and k.revoked_at is null and now() < k.expires_at",
    "k.patient_id = p_patient\n          and now() < k.expires_at",
    "a revoked consent still grants",
)
drop(
    "grant-consent-expired",
    A,
    S_VISIBILITY,
    "k.patient_id = p_patient\n          and k.revoked_at is null and now() < k.expires_at",
    "k.patient_id = p_patient\n          and k.revoked_at is null",
    "an expired consent still grants",
)
drop(
    "grant-consent-scope",
    A,
    S_VISIBILITY,
    "and p_needs = any(k.scopes) and p_needs = any(p_scopes)",
    "and p_needs = any(p_scopes)",
    "a consent grants types outside its scopes",
)
drop(
    "grant-token-scope",
    A,
    S_VISIBILITY,
    "and p_needs = any(k.scopes) and p_needs = any(p_scopes)",
    "and p_needs = any(k.scopes)",
    "a token grants types outside its scopes",
)
drop(
    "grant-consent-scopes-not-intersected",
    A,
    S_VISIBILITY,
    "array(select s from unnest(k.scopes) s where s = any(p_scopes) order by s)",
    "array(select s from unnest(k.scopes) s order by s)",
    "a row carries consent scopes the token does not hold",
)
drop(
    "grant-recordings-under-consultation-scope",
    A,
    S_LOADERS,
    "'patient/Recording.rs') g\n        where r.consultation_id = any(p_ids)",
    "'patient/Consultation.rs') g\n        where r.consultation_id = any(p_ids)",
    "recordings of a consultation need only the consultation scope",
)
drop(
    "grant-patient-under-consultation-scope",
    A,
    S_LOADERS,
    "p.id, null, 'patient/Patient.rs') a",
    "p.id, null, 'patient/Consultation.rs') a",
    "a patient's record needs only the consultation scope",
)

# --- layer 2: the page, by-patient and by-ID predicates -----------------------------------------
B = "sql: loader predicates"
drop(
    "page-patient-any",
    B,
    S_PAGES,
    "where c.patient_id = p_actor\n",
    "where true\n",
    "a patient's page lists every consultation",
)
drop(
    "page-clinician-any",
    B,
    S_PAGES,
    "where c.clinician_id = p_actor\n",
    "where true\n",
    "a clinician's page lists consultations they did not conduct",
)
drop(
    "page-support-none",
    B,
    S_PAGES,
    "'everyone'::text\n            from data.consultations c\n            where (p_after_at",
    "'everyone'::text\n"
    "            from data.consultations c\n"
    "            where false and (p_after_at",
    "support's page is empty",
)
drop(
    "page-partner-any-partner",
    B,
    S_PAGES,
    "where k.partner_id = p_actor and k.revoked_at is null\n",
    "where k.revoked_at is null\n",
    "a partner's page lists patients consenting to another partner",
)
drop(
    "page-partner-revoked",
    B,
    S_PAGES,
    "where k.partner_id = p_actor and k.revoked_at is null\n",
    "where k.partner_id = p_actor\n",
    "a partner's page lists patients whose consent was revoked",
)
drop(
    "page-partner-expired",
    B,
    S_PAGES,
    "k.revoked_at is null\n                      and now() < k.expires_at)",
    "k.revoked_at is null)",
    "a partner's page lists patients whose consent expired",
)
drop(
    "page-other-roles-all",
    B,
    S_PAGES,
    "            limit p_limit;\n    end if;\nend\n$$;\n\n"
    "create or replace function api.access_events_page(",
    "            limit p_limit;\n"
    "    else\n"
    "        return query\n"
    "            select c, null::text[], null::text, 'everyone'::text\n"
    "            from data.consultations c\n"
    "            order by c.scheduled_at desc, c.id desc\n"
    "            limit p_limit;\n"
    "    end if;\n"
    "end\n"
    "$$;\n"
    "\n"
    "create or replace function api.access_events_page(",
    "an auditor (or unknown role) gets a page of consultations",
)
drop(
    "by-patient-any",
    B,
    S_LOADERS,
    "where c.patient_id = any(p_patients)",
    "where true",
    "a patient's consultations come with every other visible consultation",
)
drop(
    "patients-conducted-any",
    B,
    S_LOADERS,
    "where c.patient_id = p.id and c.clinician_id = p_actor)",
    "where c.patient_id = p.id)",
    "a clinician is granted every patient who has any consultation",
)

# --- layer 4's questions: api.authorized_patients and its helpers ------------------------------
C = "sql: authorized_patients"
drop(
    "authorized-partner-token-scope",
    C,
    S_VISIBILITY,
    "elsif p_role = 'partner' and p_needs = any(p_scopes) then",
    "elsif p_role = 'partner' then",
    "the exit check accepts a partner's patients without the token scope",
)
drop(
    "authorized-clinician-everyone",
    C,
    S_VISIBILITY,
    "return query select * from api.conducted_or_break_glass(p_actor, p_candidates);",
    "return query select unnest(p_candidates);",
    "the exit check accepts every patient for a clinician",
)
drop(
    "authorized-partner-everyone",
    C,
    S_VISIBILITY,
    "return query select * from api.consenting_patients(p_actor, p_needs, p_candidates);",
    "return query select unnest(p_candidates);",
    "the exit check accepts every patient for a partner",
)
drop(
    "conducted-any-clinician",
    C,
    S_VISIBILITY,
    "where c.patient_id = x and c.clinician_id = p_clinician)",
    "where c.patient_id = x)",
    "any patient with a consultation counts as conducted",
)
drop(
    "break-glass-any-clinician",
    C,
    S_VISIBILITY,
    "where g.patient_id = x and g.clinician_id = p_clinician",
    "where g.patient_id = x",
    "another clinician's break-glass grant counts",
)
drop(
    "break-glass-revoked",
    C,
    S_VISIBILITY,
    "g.clinician_id = p_clinician\n                    and g.revoked_at is null and now()",
    "g.clinician_id = p_clinician\n                    and now()",
    "a revoked break-glass grant counts",
)
drop(
    "break-glass-expired",
    C,
    S_VISIBILITY,
    "and g.revoked_at is null and now() < g.expires_at)\n$$;",
    "and g.revoked_at is null)\n$$;",
    "an expired break-glass grant counts",
)
drop(
    "consenting-any-partner",
    C,
    S_VISIBILITY,
    "where k.patient_id = x and k.partner_id = p_partner",
    "where k.patient_id = x",
    "a consent to another partner counts",
)
drop(
    "consenting-revoked",
    C,
    S_VISIBILITY,
    "k.partner_id = p_partner\n                    and k.revoked_at is null and now()",
    "k.partner_id = p_partner\n                    and now()",
    "a revoked consent counts",
)
drop(
    "consenting-expired",
    C,
    S_VISIBILITY,
    "and k.revoked_at is null and now() < k.expires_at\n                    and p_scope",
    "and k.revoked_at is null\n                    and p_scope",
    "an expired consent counts",
)
drop(
    "consenting-scope",
    C,
    S_VISIBILITY,
    "\n                    and p_scope = any(k.scopes))",
    ")",
    "a consent counts for types outside its scopes",
)

# --- layer 4's database half as it runs: the questions asked with the audit write (0012) -------
G = "sql: exit check with the audit write"
T_EXIT = (
    "tests/test_exitcheck.py",
    "tests/test_exitcheck_every_statement.py",
    "tests/test_audit.py",
)
drop(
    "exit-write-accepts-everyone",
    G,
    S_AUDIT,
    "     where candidate not in (\n"
    "         select x from api.authorized_patients(p_role, p_actor, p_scopes, a.needs, "
    "a.candidates) x);",
    "     where false;",
    "the database half of the exit check finds no patient foreign: care and consent unchecked",
    T_EXIT,
)
drop(
    "exit-write-any-scope",
    G,
    S_AUDIT,
    "api.authorized_patients(p_role, p_actor, p_scopes, a.needs, a.candidates)",
    "api.authorized_patients(p_role, p_actor, p_scopes, 'patient/Patient.rs', a.candidates)",
    "a partner's consent to their record counts for their consultations and recordings",
    T_EXIT,
)
drop(
    "exit-write-stores-withheld",
    G,
    S_AUDIT,
    "        return query select unnest(foreign_patients);\n        return;\n",
    "        return query select unnest(foreign_patients);\n",
    "a withheld response's disclosures are stored in the audit trail as if sent",
    T_EXIT,
)
drop(
    "exit-write-as-another-role",
    G,
    S_AUDIT,
    "api.authorized_patients(p_role, p_actor, p_scopes, a.needs, a.candidates)",
    "api.authorized_patients('support', p_actor, p_scopes, a.needs, a.candidates)",
    "the questions are asked for another role than the caller's",
    T_EXIT,
)

# --- the audit trail's chains (0012): every event tamper-evident, no two writers on one chain ---
H = "sql: audit chains"
T_CHAIN = ("tests/test_audit.py", "tests/test_audit_replicas.py")
drop(
    "chain-hash-skips-patient",
    H,
    S_AUDIT,
    "        || data.canonical_field(e.patient_id::text) || data.canonical_field(e.client_id)",
    "        || data.canonical_field(e.client_id)",
    "an event's hash does not cover whose record it is: the patient can be rewritten unnoticed",
    T_CHAIN,
)
drop(
    "chain-hash-skips-position",
    H,
    S_AUDIT,
    "data.canonical_field(e.chain_id::text) || data.canonical_field(e.chain_seq::text)",
    "data.canonical_field(e.chain_id::text)",
    "an event's hash does not cover its position: events can be reordered unnoticed",
    T_CHAIN,
)
drop(
    "chain-seq-gap",
    H,
    S_AUDIT,
    "    new.chain_seq := prev_seq + 1;",
    "    new.chain_seq := prev_seq + 2;",
    "a chain skips a position: a gap that verify must not take for a deletion, or must report",
    T_CHAIN,
)
drop(
    "chain-two-writers",
    H,
    S_AUDIT,
    "         order by random()\n         limit 1\n           for update skip locked;",
    "         order by random()\n         limit 1;",
    "two concurrent writers take one chain: both continue the same predecessor (a fork)",
    T_CHAIN,
)
drop(
    "chain-head-keeps-hash",
    H,
    S_AUDIT,
    "           set last_seq = split_part(tail, ':', 1)::bigint,\n"
    "               last_hash = decode(split_part(tail, ':', 2), 'hex')",
    "           set last_seq = split_part(tail, ':', 1)::bigint",
    "the chain head advances its position, not its hash: the next writer links to a stale hash",
    T_CHAIN,
)
drop(
    "chain-prev-hash-unset",
    H,
    S_AUDIT,
    "    new.prev_hash := prev_hash;",
    "    new.prev_hash := null;",
    "an event does not store its predecessor's hash",
    T_CHAIN,
)

K = "sql: the trail's months, archive and checkpoints"
T_MONTHS = (
    "tests/test_audit_partitions.py",
    "tests/test_audit_archive.py",
    "tests/test_audit_archive_safety.py",
)
drop(
    "checkpoint-any-hash",
    K,
    S_AUDIT,
    "    if not found then\n        raise exception 'no event at chain % position % has that hash'",
    "    if false then\n        raise exception 'no event at chain % position % has that hash'",
    "a checkpoint past an altered event is recorded: the nightly verify starts after it",
    T_MONTHS,
)
drop(
    "months-truncatable",
    K,
    S_AUDIT,
    "          and not exists (select from pg_trigger t\n"
    "                          where t.tgrelid = c.oid and t.tgname = 'access_events_no_truncate')",
    "          and false",
    "a month of the trail can be truncated by its owner: a month of events gone in one statement",
    T_MONTHS,
)
drop(
    "months-ahead-unbounded",
    K,
    S_AUDIT,
    "    if p_months_ahead is null or p_months_ahead < 0 or p_months_ahead > 24 then",
    "    if p_months_ahead is null then",
    "the nightly job's role can make months without end (thousands of tables)",
    T_MONTHS,
)
drop(
    "archive-row-rewritable",
    K,
    S_AUDIT,
    "        if old.deleted_at is null and new.deleted_at is not null\n"
    "           and (to_jsonb(new) - 'deleted_at') = (to_jsonb(old) - 'deleted_at') then",
    "        if true then",
    "an archive's location or digest can be rewritten: a forged file then verifies",
    T_MONTHS,
)
drop(
    "months-made-none",
    K,
    S_AUDIT,
    "            execute format('alter table data.access_events attach partition "
    "audit_partitions.%I '\n"
    "                           'for values from (%L) to (%L)', name, month, next_month);",
    "            perform month, next_month;",
    "no month is made ahead: at the turn of the month every event, and every disclosure, fails",
    T_MONTHS,
)

drop(
    "checkpoint-backward",
    K,
    S_AUDIT,
    "    if furthest is not null and p_position < furthest then",
    "    if false then",
    "a checkpoint moves back: a stolen reader credential makes a rewrite look checked",
    T_MONTHS,
)
drop(
    "checkpoint-other-hash",
    K,
    S_AUDIT,
    "    if furthest = p_position and not exists (",
    "    if false and not exists (",
    "a checkpoint's position is recorded again with another hash, as if nothing had changed",
    T_MONTHS,
)
drop(
    "checkpoints-changeable",
    K,
    S_AUDIT,
    "    raise exception 'audit_checkpoints is append-only' using errcode = "
    "'insufficient_privilege';",
    "    return coalesce(new, old);",
    "the checkpoints on record can be changed or removed: --full no longer holds them",
    T_MONTHS,
)

# --- the access log, consents, changes of access ------------------------------------------------
D = "sql: access log, consents"
T_LOG = (*T_SQL, "tests/test_access_log_views.py")
KINDS = (
    "              and e.kind in ('disclosure', 'media', 'consent-granted', 'consent-revoked',\n"
    "                             'break-glass-opened')\n"
)
for view, line in (
    ("", "              and e.seq is not null\n"),
    ("-others", "              and e.role is distinct from 'patient' and e.seq is not null\n"),
    ("-emergency", "              and e.break_glass_reason is not null and e.seq is not null\n"),
):
    drop(
        f"access-log{view}-any-patient",
        D,
        S_PAGES,
        "where e.patient_id = p_actor\n" + KINDS + line,
        "where true\n" + KINDS + line,
        f"a patient's access log{view.replace('-', ', view ')} holds every patient's events",
        T_LOG,
    )
drop(
    "access-log-other-roles",
    D,
    S_PAGES,
    "    elsif p_role = 'auditor' then\n        return query\n            select e.seq",
    "    elsif p_role is not null then\n        return query\n            select e.seq",
    "a clinician, support or partner reads every access event",
    T_LOG,
)
drop(
    "access-log-others-keeps-own",
    D,
    S_PAGES,
    "              and e.role is distinct from 'patient' and e.seq is not null\n",
    "              and e.seq is not null\n",
    "the patient's 'others' view of their log still holds their own reads",
    ("tests/test_access_log_views.py",),
)
drop(
    "access-log-emergency-keeps-all",
    D,
    S_PAGES,
    "              and e.break_glass_reason is not null and e.seq is not null\n",
    "              and e.seq is not null\n",
    "the patient's emergency view of their log holds every access",
    ("tests/test_access_log_views.py",),
)
drop(
    "consents-of-any-patient",
    D,
    S_CONSENT,
    "where p_role = 'patient' and k.patient_id = p_actor\n",
    "where p_role = 'patient'\n",
    "a patient's consent list holds every patient's consents",
)
drop(
    "revoke-any-patients-consent",
    D,
    S_CONSENT,
    "where id = p_consent and p_role = 'patient' and patient_id = p_actor",
    "where id = p_consent and p_role = 'patient'",
    "a patient revokes another patient's consent",
)

# --- the consent page (0014): a partner's request checked, answered once by its patient ---------
C = "sql: the consent page"
T_CONSENT_PAGE = (
    "tests/test_consent_page.py",
    "tests/test_layers_alone.py",
    "tests/test_rls_alone.py",
    "tests/test_mutation_rights.py",
)
for mutant_id, old, new, why in (
    (
        "consent-request-open-any-role",
        "    if p_role <> 'patient' then\n        return;\n    end if;\n    select * into asked",
        "    select * into asked",
        "anyone (a partner itself) opens a consent request in a patient's name",
    ),
    (
        "consent-request-disabled-partner",
        "where id = p_partner and disabled_at is null;",
        "where id = p_partner;",
        "a disabled partner still asks patients for consent",
    ),
    (
        "consent-request-any-redirect",
        "    if not p_redirect_uri = any(asked.redirect_uris) then",
        "    if false then",
        "the consent page sends the patient (and the outcome) to an address nobody registered",
    ),
    (
        "consent-request-any-scope",
        "where not s = any(asked.allowed_scopes)",
        "where false",
        "a partner asks for scopes it may not ask for",
    ),
    (
        "consent-answer-any-patient",
        "where id = p_request and p_role = 'patient' and patient_id = p_actor",
        "where id = p_request and p_role = 'patient'",
        "a patient approves another patient's request, granting in their name",
    ),
    (
        "consent-answer-any-role",
        "where id = p_request and p_role = 'patient' and patient_id = p_actor",
        "where id = p_request and patient_id = p_actor",
        "a caller of another role with the patient's id answers (the role guard alone)",
    ),
    (
        "consent-answer-twice",
        "    if asked.answered_at is not null then",
        "    if false then",
        "a replayed approval grants again (or turns a decline into a consent)",
    ),
    (
        "consent-answer-expired",
        "    if now() >= asked.valid_until then",
        "    if false then",
        "a request left open for days is still approved",
    ),
    (
        "consent-answer-disabled-partner",
        "where id = asked.partner_id and disabled_at is null;",
        "where id = asked.partner_id;",
        "a partner disabled after asking is still granted the consent",
    ),
    (
        "consent-answer-redirect-removed",
        "    if not asked.redirect_uri = any(partner.redirect_uris) then",
        "    if false then",
        "the patient is sent to an address the operator removed after the partner asked",
    ),
    (
        "consent-grant-unlocked",
        "    perform pg_advisory_xact_lock(hashtextextended(p_actor::text || '/' || "
        "p_partner::text, 14));\n",
        "",
        "two approvals at once: the second fails (or, without the index, two consents in force)",
    ),
    (
        "consent-code-any-partner",
        "where r.code_digest = p_code_digest and p_role = 'partner' and r.partner_id = p_actor",
        "where r.code_digest = p_code_digest and p_role = 'partner'",
        "another partner holding the code (it travelled through a browser) learns the patient",
    ),
    (
        "consent-code-any-role",
        "where r.code_digest = p_code_digest and p_role = 'partner' and r.partner_id = p_actor",
        "where r.code_digest = p_code_digest and r.partner_id = p_actor",
        "a caller of another role with the partner's id redeems (the role guard alone)",
    ),
    (
        "consent-code-twice",
        "    if issued.id is null or issued.code_redeemed_at is not null\n",
        "    if issued.id is null\n",
        "a replayed code (a leaked log line) names the patient again",
    ),
    (
        "consent-code-any-state",
        "       or now() >= issued.code_expires_at or issued.state is distinct from p_state then",
        "       or now() >= issued.code_expires_at then",
        "a code stolen from a browser, redeemed in another session, names the patient there",
    ),
    (
        "rls-consent-request-partner-any-partner",
        "    using (api.scope_role() = 'partner' and partner_id = api.scope_actor() and approved\n"
        "           and now() < code_expires_at);",
        "    using (api.scope_role() = 'partner' and approved\n"
        "           and now() < code_expires_at);",
        "consent_request_partner_rows: a partner reads every partner's approved requests",
    ),
    (
        "consent-code-expired",
        "       or now() >= issued.code_expires_at or issued.state is distinct from p_state then",
        "       or issued.state is distinct from p_state then",
        "a code found days later still names the patient",
    ),
    (
        "rls-consent-request-any-patient",
        "using (\n    api.scope_role() = 'patient' and patient_id = api.scope_actor()\n);",
        "using (\n    api.scope_role() = 'patient'\n);",
        "consent_request_rows: a patient reads every patient's requests",
    ),
):
    path = S_POLICIES if mutant_id.startswith("rls-") else S_CONSENT
    drop(mutant_id, C, path, old, new, why, T_CONSENT_PAGE)

# --- layer 3: the row-level security policies --------------------------------------------------
E = "sql: row-level security"
drop(
    "rls-consultation-patient",
    E,
    S_POLICIES,
    "on data.consultations for select to gateway_app using (\n"
    "    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))",
    "on data.consultations for select to gateway_app using (\n"
    "    ((select api.scope_role()) = 'patient')",
    "consultation_rows: a patient sees every consultation",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-clinician",
    E,
    S_POLICIES,
    "        clinician_id = (select api.scope_actor())\n        or exists (",
    "        true\n        or exists (",
    "consultation_rows: a clinician sees every consultation",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-break-glass-any-patient",
    E,
    S_POLICIES,
    "g.clinician_id = (select api.scope_actor()) and g.patient_id = consultations.patient_id",
    "g.clinician_id = (select api.scope_actor())",
    "consultation_rows: one break-glass grant opens every patient",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-break-glass-revoked",
    E,
    S_POLICIES,
    "g.patient_id = consultations.patient_id\n              and g.revoked_at is null and now()",
    "g.patient_id = consultations.patient_id\n              and now()",
    "consultation_rows: a revoked break-glass grant still opens",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-break-glass-expired",
    E,
    S_POLICIES,
    "and g.revoked_at is null and now() < g.expires_at)))",
    "and g.revoked_at is null)))",
    "consultation_rows: an expired break-glass grant still opens",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-auditor",
    E,
    S_POLICIES,
    "    or (select api.scope_role()) = 'support'\n    or ((select api.scope_role()) = 'partner'\n"
    "        and 'patient/Consultation.rs'",
    "    or (select api.scope_role()) in ('support', 'auditor')\n"
    "    or ((select api.scope_role()) = 'partner'\n"
    "        and 'patient/Consultation.rs'",
    "consultation_rows: an auditor sees every consultation",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-partner-token",
    E,
    S_POLICIES,
    "and 'patient/Consultation.rs' = any((select api.scope_scopes())::text[])",
    "and true",
    "consultation_rows: a partner without the token scope",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-partner-any-partner",
    E,
    S_POLICIES,
    "where k.partner_id = (select api.scope_actor()) and k.patient_id = consultations.patient_id",
    "where k.patient_id = consultations.patient_id",
    "consultation_rows: a consent to another partner",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-partner-revoked",
    E,
    S_POLICIES,
    "k.patient_id = consultations.patient_id\n              and k.revoked_at is null and now()",
    "k.patient_id = consultations.patient_id\n              and now()",
    "consultation_rows: a revoked consent",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-partner-expired",
    E,
    S_POLICIES,
    "and now() < k.expires_at\n              and 'patient/Consultation.rs' = any(k.scopes)",
    "\n              and 'patient/Consultation.rs' = any(k.scopes)",
    "consultation_rows: an expired consent",
    T_RLS + T_SQL,
)
drop(
    "rls-consultation-partner-consent-scope",
    E,
    S_POLICIES,
    "and 'patient/Consultation.rs' = any(k.scopes)",
    "and true",
    "consultation_rows: a consent without the consultation scope",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-any",
    E,
    S_POLICIES,
    "((select api.scope_role()) in ('patient', 'clinician')\n"
    "        and exists (select 1 from data.consultations c"
    " where c.id = recordings.consultation_id))",
    "((select api.scope_role()) in ('patient', 'clinician'))",
    "recording_rows: a patient or clinician sees every recording",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-support",
    E,
    S_POLICIES,
    "in ('patient', 'clinician')",
    "in ('patient', 'clinician', 'support')",
    "recording_rows: support sees recordings",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-partner-token",
    E,
    S_POLICIES,
    "and 'patient/Recording.rs' = any((select api.scope_scopes())::text[])",
    "and true",
    "recording_rows: a partner without the token scope",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-partner-any-partner",
    E,
    S_POLICIES,
    "where k.partner_id = (select api.scope_actor()) and k.patient_id = recordings.patient_id",
    "where k.patient_id = recordings.patient_id",
    "recording_rows: a consent to another partner",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-partner-any-patient",
    E,
    S_POLICIES,
    "where k.partner_id = (select api.scope_actor()) and k.patient_id = recordings.patient_id",
    "where k.partner_id = (select api.scope_actor())",
    "recording_rows: one consent opens every patient's recordings",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-partner-revoked",
    E,
    S_POLICIES,
    "k.patient_id = recordings.patient_id\n              and k.revoked_at is null and now()",
    "k.patient_id = recordings.patient_id\n              and now()",
    "recording_rows: a revoked consent",
    T_RLS + T_SQL,
)
drop(
    "rls-recording-partner-consent-scope",
    E,
    S_POLICIES,
    "and 'patient/Recording.rs' = any(k.scopes)",
    "and true",
    "recording_rows: a consent without the recording scope",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-patient",
    E,
    S_POLICIES,
    "((select api.scope_role()) = 'patient' and id = (select api.scope_actor()))",
    "((select api.scope_role()) = 'patient')",
    "patient_rows: a patient sees every patient",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-clinician",
    E,
    S_POLICIES,
    "or ((select api.scope_role()) = 'clinician'\n"
    "        and exists (select 1 from data.consultations c where c.patient_id = patients.id))",
    "or ((select api.scope_role()) = 'clinician')",
    "patient_rows: a clinician sees every patient",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-auditor",
    E,
    S_POLICIES,
    "    or (select api.scope_role()) = 'support'\n    or ((select api.scope_role()) = 'partner'\n"
    "        and 'patient/Patient.rs'",
    "    or (select api.scope_role()) in ('support', 'auditor')\n"
    "    or ((select api.scope_role()) = 'partner'\n"
    "        and 'patient/Patient.rs'",
    "patient_rows: an auditor sees every patient",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-partner-token",
    E,
    S_POLICIES,
    "and 'patient/Patient.rs' = any((select api.scope_scopes())::text[])",
    "and true",
    "patient_rows: a partner without the token scope",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-partner-any-partner",
    E,
    S_POLICIES,
    "where k.partner_id = (select api.scope_actor()) and k.patient_id = patients.id",
    "where k.patient_id = patients.id",
    "patient_rows: a consent to another partner",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-partner-expired",
    E,
    S_POLICIES,
    "and now() < k.expires_at\n              and 'patient/Patient.rs' = any(k.scopes)",
    "\n              and 'patient/Patient.rs' = any(k.scopes)",
    "patient_rows: an expired consent",
    T_RLS + T_SQL,
)
drop(
    "rls-patient-partner-consent-scope",
    E,
    S_POLICIES,
    "and 'patient/Patient.rs' = any(k.scopes)",
    "and true",
    "patient_rows: a consent without the patient scope",
    T_RLS + T_SQL,
)
drop(
    "rls-consent-patient",
    E,
    S_POLICIES,
    "on data.consents for select to gateway_app using (\n"
    "    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))",
    "on data.consents for select to gateway_app using (\n"
    "    ((select api.scope_role()) = 'patient')",
    "consent_rows: a patient sees every consent",
    T_RLS + T_SQL,
)
drop(
    "rls-consent-partner",
    E,
    S_POLICIES,
    "or ((select api.scope_role()) = 'partner' and partner_id = (select api.scope_actor()))",
    "or ((select api.scope_role()) = 'partner')",
    "consent_rows: a partner sees every consent",
    T_RLS + T_SQL,
)
drop(
    "rls-consent-revoke-any",
    E,
    S_POLICIES,
    "for update to gateway_app\n"
    "    using ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))",
    "for update to gateway_app\n    using ((select api.scope_role()) = 'patient')",
    "consent_revoke: a patient may revoke any consent",
    T_RLS + T_SQL,
)
drop(
    "rls-access-event-patient",
    E,
    S_POLICIES,
    "on data.access_events for select to gateway_app using (\n"
    "    ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))",
    "on data.access_events for select to gateway_app using (\n"
    "    ((select api.scope_role()) = 'patient')",
    "access_event_rows: a patient sees every access event",
    T_RLS + T_SQL,
)
drop(
    "rls-access-event-clinician",
    E,
    S_POLICIES,
    "    or (select api.scope_role()) = 'auditor'\n);",
    "    or (select api.scope_role()) in ('auditor', 'clinician')\n);",
    "access_event_rows: a clinician sees every access event",
    T_RLS + T_SQL,
)
drop(
    "rls-break-glass-clinician",
    E,
    S_POLICIES,
    "((select api.scope_role()) = 'clinician' and clinician_id = (select api.scope_actor()))",
    "((select api.scope_role()) = 'clinician')",
    "break_glass_rows: a clinician sees every break-glass grant",
    T_RLS + T_SQL,
)
drop(
    "rls-break-glass-patient",
    E,
    S_POLICIES,
    "or ((select api.scope_role()) = 'patient' and patient_id = (select api.scope_actor()))",
    "or ((select api.scope_role()) = 'patient')",
    "break_glass_rows: a patient sees every break-glass grant",
    T_RLS + T_SQL,
)

# --- the policy table's data (evaluated at import: out of mutmut's reach) ----------------------
F = "python: policy table, import-time code"


def table(id: str, old: str, new: str, why: str, path: str = TABLE, tests=T_TABLE) -> None:
    mutant(id, F, path, old, new, why, tests)


table(
    "rule-dropped-patient-clinical",
    'Role.PATIENT: grant(RowScope.OWN, SCHEDULING, CLINICAL, "patient", "recordings"),',
    'Role.PATIENT: grant(RowScope.OWN, SCHEDULING, "patient", "recordings"),',
    "a rule dropped: patients lose their consultations' reason and summary",
)
table(
    "rule-added-support-clinical",
    'Role.SUPPORT: grant(RowScope.EVERYONE, SCHEDULING, "patient"),',
    'Role.SUPPORT: grant(RowScope.EVERYONE, SCHEDULING, CLINICAL, "patient"),',
    "a rule added: support reads reason and summary",
)
table(
    "rule-added-support-recordings",
    "            Role.PATIENT: grant(RowScope.OWN, RECORDING),\n",
    "            Role.PATIENT: grant(RowScope.OWN, RECORDING),\n"
    "            Role.SUPPORT: grant(RowScope.EVERYONE, RECORDING),\n",
    "a role added: support reads recordings",
)
table(
    "rows-consultation-patient-everyone",
    'Role.PATIENT: grant(RowScope.OWN, SCHEDULING, CLINICAL, "patient", "recordings"),',
    'Role.PATIENT: grant(RowScope.EVERYONE, SCHEDULING, CLINICAL, "patient", "recordings"),',
    "row scope widened: a patient may hold every consultation",
)
table(
    "rows-consultation-clinician-everyone",
    'Role.CLINICIAN: grant(RowScope.CONDUCTED, SCHEDULING, CLINICAL, "patient", "recordings")\n'
    '            | grant(RowScope.CONDUCTED, "clinicianNotes", conducted=True),',
    'Role.CLINICIAN: grant(RowScope.EVERYONE, SCHEDULING, CLINICAL, "patient", "recordings")\n'
    '            | grant(RowScope.EVERYONE, "clinicianNotes", conducted=True),',
    "row scope widened: a clinician may hold every consultation",
)
table(
    "rows-consultation-partner-everyone",
    'RowScope.CONSENTED, SCHEDULING, "summary", "patient", scope=scopes.CONSULTATION\n'
    '            )\n            | grant(RowScope.CONSENTED, "recordings", scope=scopes.RECORDING),',
    'RowScope.EVERYONE, SCHEDULING, "summary", "patient", scope=scopes.CONSULTATION\n'
    '            )\n            | grant(RowScope.EVERYONE, "recordings", scope=scopes.RECORDING),',
    "row scope widened: a partner may hold every consultation",
)
table(
    "rows-recording-clinician-everyone",
    "Role.CLINICIAN: grant(RowScope.CONDUCTED, RECORDING),",
    "Role.CLINICIAN: grant(RowScope.EVERYONE, RECORDING),",
    "row scope widened: a clinician may hold every recording",
)
table(
    "rows-recording-patient-everyone",
    "Role.PATIENT: grant(RowScope.OWN, RECORDING),",
    "Role.PATIENT: grant(RowScope.EVERYONE, RECORDING),",
    "row scope widened: a patient may hold every recording",
)
table(
    "rows-recording-partner-everyone",
    "Role.PARTNER: grant(RowScope.CONSENTED, RECORDING, scope=scopes.RECORDING),",
    "Role.PARTNER: grant(RowScope.EVERYONE, RECORDING, scope=scopes.RECORDING),",
    "row scope widened: a partner may hold every recording",
)
table(
    "rows-patient-patient-everyone",
    'Role.PATIENT: grant(RowScope.OWN, "id", "displayName", "birthDate", "consultations"),',
    'Role.PATIENT: grant(RowScope.EVERYONE, "id", "displayName", "birthDate", "consultations"),',
    "row scope widened: a patient may hold every patient",
)
table(
    "rows-patient-clinician-everyone",
    'RowScope.CONDUCTED, "id", "displayName", "birthDate", "consultations"\n',
    'RowScope.EVERYONE, "id", "displayName", "birthDate", "consultations"\n',
    "row scope widened: a clinician may hold every patient",
)
table(
    "rows-patient-partner-everyone",
    'RowScope.CONSENTED, "id", "displayName", "birthDate", scope=scopes.PATIENT\n'
    "            )\n"
    '            | grant(RowScope.CONSENTED, "consultations", scope=scopes.CONSULTATION),',
    'RowScope.EVERYONE, "id", "displayName", "birthDate", scope=scopes.PATIENT\n'
    "            )\n"
    '            | grant(RowScope.EVERYONE, "consultations", scope=scopes.CONSULTATION),',
    "row scope widened: a partner may hold every patient",
)
table(
    "rows-access-event-patient-everyone",
    "Role.PATIENT: grant(RowScope.OWN, ACCESS_EVENT),",
    "Role.PATIENT: grant(RowScope.EVERYONE, ACCESS_EVENT),",
    "row scope widened: a patient may hold every access event",
)
table(
    "rows-accessed-object-patient-everyone",
    'Role.PATIENT: grant(RowScope.OWN, "type", "id", "fields", "consultation"),',
    'Role.PATIENT: grant(RowScope.EVERYONE, "type", "id", "fields", "consultation"),',
    "row scope widened: a patient may hold every accessed object",
)
table(
    "rows-consent-patient-everyone",
    '                RowScope.OWN,\n                "id",\n                "partner",\n'
    '                "scopes",\n                "grantedAt",',
    '                RowScope.EVERYONE,\n                "id",\n                "partner",\n'
    '                "scopes",\n                "grantedAt",',
    "row scope widened: a patient may hold every consent",
)
table(
    "rows-consent-request-patient-everyone",
    '                RowScope.OWN,\n                "id",\n                "partner",\n'
    '                "scopes",\n                "consentExpiresAt",',
    '                RowScope.EVERYONE,\n                "id",\n                "partner",\n'
    '                "scopes",\n                "consentExpiresAt",',
    "row scope widened: a patient may hold every consent request (and answer another's)",
)
table(
    "rows-break-glass-clinician-everyone",
    'RowScope.CONDUCTED, "id", "patient", "reason", "openedAt", "expiresAt"',
    'RowScope.EVERYONE, "id", "patient", "reason", "openedAt", "expiresAt"',
    "row scope widened: a clinician may hold every break-glass grant",
)
table(
    "condition-dropped-notes-conducted",
    'grant(RowScope.CONDUCTED, "clinicianNotes", conducted=True)',
    'grant(RowScope.CONDUCTED, "clinicianNotes")',
    "a condition dropped: a clinician under break-glass reads another's notes",
)
table(
    "condition-dropped-partner-consultation-scope",
    'RowScope.CONSENTED, SCHEDULING, "summary", "patient", scope=scopes.CONSULTATION',
    'RowScope.CONSENTED, SCHEDULING, "summary", "patient"',
    "a condition dropped: a partner reads consultations without the consultation scope",
)
table(
    "condition-dropped-partner-recordings-scope",
    '| grant(RowScope.CONSENTED, "recordings", scope=scopes.RECORDING),',
    '| grant(RowScope.CONSENTED, "recordings"),',
    "a condition dropped: a partner lists recordings without the recording scope",
)
table(
    "condition-dropped-recording-scope",
    "Role.PARTNER: grant(RowScope.CONSENTED, RECORDING, scope=scopes.RECORDING),",
    "Role.PARTNER: grant(RowScope.CONSENTED, RECORDING),",
    "a condition dropped: a partner reads recordings without the recording scope",
)
table(
    "condition-dropped-patient-scope",
    '"birthDate", scope=scopes.PATIENT',
    '"birthDate"',
    "a condition dropped: a partner reads a patient without the patient scope",
)
table(
    "condition-swapped-partner-patient-consultations",
    '| grant(RowScope.CONSENTED, "consultations", scope=scopes.CONSULTATION),',
    '| grant(RowScope.CONSENTED, "consultations", scope=scopes.PATIENT),',
    "a condition swapped: a patient's consultations need only the patient scope",
)
table(
    "smart-scope-recording",
    "smart_scope=scopes.RECORDING,",
    "smart_scope=scopes.CONSULTATION,",
    "the exit check holds a partner's recordings to the consultation scope",
)
table(
    "smart-scope-patient",
    "smart_scope=scopes.PATIENT,",
    "smart_scope=scopes.CONSULTATION,",
    "the exit check holds a partner's patients to the consultation scope",
)
table(
    "mutation-grant-consent-partner",
    'MutationRight("grantConsent", frozenset({Role.PATIENT})),',
    'MutationRight("grantConsent", frozenset({Role.PATIENT, Role.PARTNER})),',
    "a mutation right widened: partners may call grantConsent",
)
table(
    "mutation-revoke-consent-clinician",
    'MutationRight("revokeConsent", frozenset({Role.PATIENT})),',
    'MutationRight("revokeConsent", frozenset({Role.PATIENT, Role.CLINICIAN})),',
    "a mutation right widened: clinicians may call revokeConsent",
)
table(
    "mutation-break-glass-support",
    'MutationRight("openBreakGlass", frozenset({Role.CLINICIAN})),',
    'MutationRight("openBreakGlass", frozenset({Role.CLINICIAN, Role.SUPPORT})),',
    "a mutation right widened: support may call openBreakGlass",
)
table(
    "grant-conditions-dropped",
    "condition = Condition(scope, conducted) if scope or conducted else ALWAYS",
    "condition = ALWAYS",
    "grant() drops every condition",
)
table(
    "grant-union-drops-second",
    "return Grant(self.rows, {**self.fields, **other.fields})",
    "return Grant(self.rows, dict(self.fields))",
    "Grant.__or__ drops the second grant's fields",
)
table(
    "clinician-grants-without-break-glass",
    '_CLINICIAN_GRANTS = frozenset({"conducted", "break-glass"})',
    '_CLINICIAN_GRANTS = frozenset({"conducted"})',
    "field check: a clinician's break-glass rows are refused",
    path="src/gateway/authz/field_check.py",
)
table(
    "clinician-grants-with-consent",
    '_CLINICIAN_GRANTS = frozenset({"conducted", "break-glass"})',
    '_CLINICIAN_GRANTS = frozenset({"conducted", "break-glass", "consent", "own"})',
    "field check: a clinician accepts rows loaded under a consent or as a patient's own",
    path="src/gateway/authz/field_check.py",
)
table(
    "policy-field-without-guard",
    'extensions = [*kwargs.pop("extensions", ()), guard]',
    'extensions = [*kwargs.pop("extensions", ())]',
    "policy_field() forgets the field check (runs at import: out of mutmut's reach)",
    path="src/gateway/authz/field_check.py",
)
table(
    "policy-mutation-without-right",
    "return strawberry.mutation(permission_classes=[MutationPolicy], **kwargs)",
    "return strawberry.mutation(**kwargs)",
    "policy_mutation() forgets who may make the change (runs at import: out of mutmut's reach)",
    path="src/gateway/authz/field_check.py",
)
table(
    "disclosure-kinds-without-media",
    'DISCLOSURE_KINDS = frozenset({"disclosure", "media"})',
    'DISCLOSURE_KINDS = frozenset({"disclosure"})',
    "the disclosure step refuses media playbacks",
    path="src/gateway/authz/disclosure.py",
    tests=("tests/test_media.py", "tests/test_exitcheck.py", "tests/test_roles.py"),
)
table(
    "disclosure-kinds-with-denial",
    'DISCLOSURE_KINDS = frozenset({"disclosure", "media"})',
    'DISCLOSURE_KINDS = frozenset({"disclosure", "media", "denial"})',
    "the disclosure step counts break-glass reads of denials",
    path="src/gateway/authz/disclosure.py",
    tests=("tests/test_exitcheck.py", "tests/test_roles.py", "tests/test_metrics.py"),
)


def declaration_errors(item: Mutant) -> list[str]:
    """Why ``item`` would not mutate what runs: its old text is not in its file exactly once, or
    (SQL) its file is a numbered migration, which is history: what the database runs is defined
    once, in src/gateway/data/sql, and a mutant of a migration's text would survive for nothing."""
    path = ROOT / item.path
    text = path.read_text(encoding="utf-8")
    found = text.count(item.old)
    if found != 1:
        return [f"{item.id}: the old text occurs {found} times in {item.path}"]
    if path.suffix == ".sql" and path.parent != ROOT / DEFINITIONS:
        return [f"{item.id}: {item.path} is not a definition file ({DEFINITIONS})"]
    return []
