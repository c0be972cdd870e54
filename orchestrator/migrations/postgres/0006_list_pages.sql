-- The API's lists are paged by keyset: newest first by (created_at, id),
-- each page after the previous page's last row (store::Page). Every list
-- and filter reads one index ending in (created_at, id), so a page costs
-- its rows, not the table.
CREATE INDEX releases_by_tenant ON releases (tenant, created_at, id);

DROP INDEX promotions_by_tenant;
CREATE INDEX promotions_by_tenant ON promotions (tenant, created_at, id);
CREATE INDEX promotions_by_environment ON promotions (tenant, environment, created_at, id);
CREATE INDEX promotions_by_release ON promotions (release_id, created_at, id);
CREATE INDEX promotions_by_tenant_state ON promotions (tenant, state, created_at, id);

DROP INDEX jobs_by_tenant;
CREATE INDEX jobs_by_tenant ON jobs (tenant, created_at, id);
-- The unfinished jobs (`?active=true`), in the words of the store's query
-- (store::jobs::ACTIVE_STATES), so that the planner matches this index.
CREATE INDEX jobs_active_by_tenant ON jobs (tenant, created_at, id)
    WHERE state IN ('pending', 'preparing', 'running', 'completing', 'rolling_back');
