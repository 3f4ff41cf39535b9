-- Accounts with the developer capability may send free-form GraphQL documents to a production
-- gateway; everyone else sends trusted (persisted) documents only.
alter table data.accounts add column developer boolean not null default false;

-- The functions, triggers, policies and privileges this migration made or changed are defined,
-- as they stand now, in src/gateway/data/sql/ (applied after the migrations).
