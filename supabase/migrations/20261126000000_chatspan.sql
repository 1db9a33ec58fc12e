-- chatspan: chats and errors synced by chatspan's Supabase exporter.
--
-- Supabase CLI: `supabase db push` applies it; or paste it into the SQL editor.
-- Running it again changes nothing.
--
-- Who may do what (row level security):
--   service_role   inserts and reads every row (the exporter uses this key)
--   authenticated  reads only rows whose user_id is the subject (sub) of their JWT
--   anon           nothing
-- Nobody but the service role inserts, updates or deletes.

create table if not exists public.error (
    id              uuid primary key,
    created_at      timestamptz not null default now(),
    trace_id        text,
    span_id         text,
    type_error      text,
    error_message   text,
    stacktrace      text,
    fingerprint     text,
    user_id         text,
    app_id          text,
    conversation_id text,
    node            text,
    node_type       text,
    route           text,
    service_name    text,
    attributes      jsonb not null default '{}'::jsonb
);

create table if not exists public.dify_logs (
    id                     uuid primary key,
    created_at             timestamptz not null default now(),
    trace_id               text,
    span_id                text,
    app_id                 text,
    conversation_id        text,
    message_id             text,
    user_id                text,
    input_text             text,
    output_text            text,
    latency_ms             double precision,
    time_to_first_token_ms double precision,
    model                  text,
    provider               text,
    input_tokens           bigint,
    output_tokens          bigint,
    total_tokens           bigint,
    status                 text not null default 'ok',
    response_mode          text,
    route                  text,
    service_name           text,
    attributes             jsonb not null default '{}'::jsonb
);

create index if not exists error_user_created_idx on public.error (user_id, created_at desc, id desc);
create index if not exists error_app_created_idx on public.error (app_id, created_at desc);
create index if not exists error_type_created_idx on public.error (type_error, created_at desc);
create index if not exists error_fingerprint_created_idx on public.error (fingerprint, created_at desc);
create index if not exists error_created_idx on public.error (created_at desc, id desc);
create index if not exists dify_logs_user_created_idx on public.dify_logs (user_id, created_at desc, id desc);
create index if not exists dify_logs_app_created_idx on public.dify_logs (app_id, created_at desc);
create index if not exists dify_logs_conversation_created_idx on public.dify_logs (conversation_id, created_at);
create index if not exists dify_logs_created_idx on public.dify_logs (created_at desc, id desc);

alter table public.error enable row level security;
alter table public.dify_logs enable row level security;

-- Supabase grants every new table in public to anon and authenticated: take it back,
-- then give each role only what the policies below use.
revoke all on table public.error, public.dify_logs from anon, authenticated;
grant select on table public.error, public.dify_logs to authenticated;
grant all on table public.error, public.dify_logs to service_role;

drop policy if exists "chatspan: service role manages errors" on public.error;
create policy "chatspan: service role manages errors" on public.error
    for all to service_role using (true) with check (true);

drop policy if exists "chatspan: users read their own errors" on public.error;
create policy "chatspan: users read their own errors" on public.error
    for select to authenticated using (user_id = (select auth.jwt() ->> 'sub'));

drop policy if exists "chatspan: service role manages chats" on public.dify_logs;
create policy "chatspan: service role manages chats" on public.dify_logs
    for all to service_role using (true) with check (true);

drop policy if exists "chatspan: users read their own chats" on public.dify_logs;
create policy "chatspan: users read their own chats" on public.dify_logs
    for select to authenticated using (user_id = (select auth.jwt() ->> 'sub'));

-- Admin views. security_invoker makes them apply the caller's row level security, so a
-- user sees their own errors here too and anon sees nothing.
create or replace view public.chatspan_errors_by_type_day with (security_invoker = true) as
    select date_trunc('day', created_at, 'UTC') as day,
           type_error,
           count(*) as errors,
           count(distinct user_id) as users
    from public.error
    group by 1, 2;

create or replace view public.chatspan_recent_errors with (security_invoker = true) as
    select id, created_at, type_error, error_message, fingerprint, user_id, app_id, node,
           route, trace_id
    from public.error
    where created_at > now() - interval '7 days'
    order by created_at desc;

revoke all on table public.chatspan_errors_by_type_day, public.chatspan_recent_errors from anon, authenticated;
grant select on table public.chatspan_errors_by_type_day, public.chatspan_recent_errors to authenticated, service_role;
