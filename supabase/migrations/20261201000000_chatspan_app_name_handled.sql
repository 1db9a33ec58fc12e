-- chatspan: each chat's app name; errors the app recovered from, marked as handled.
--
-- Apply after 20261126000000_chatspan.sql (`supabase db push` applies both in order).
-- Running it again changes nothing. The exporter sends these columns from chatspan
-- 0.2 on: apply this file before upgrading the exporter, or its rows are refused.

alter table public.dify_logs add column if not exists app_name text;
alter table public.error add column if not exists handled boolean not null default false;

-- The admin views count the errors the app did not recover from.
create or replace view public.chatspan_errors_by_type_day with (security_invoker = true) as
    select date_trunc('day', created_at, 'UTC') as day,
           type_error,
           count(*) as errors,
           count(distinct user_id) as users
    from public.error
    where not handled
    group by 1, 2;

create or replace view public.chatspan_recent_errors with (security_invoker = true) as
    select id, created_at, type_error, error_message, fingerprint, user_id, app_id, node,
           route, trace_id
    from public.error
    where created_at > now() - interval '7 days' and not handled
    order by created_at desc;

-- PostgREST learns the new columns now rather than at its next schema reload.
notify pgrst, 'reload schema';
