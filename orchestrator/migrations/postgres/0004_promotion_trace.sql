-- The W3C traceparent of the span that requested the promotion: every
-- later span of the promotion (approval wait, gates, deployment, tasks,
-- agents) is its descendant, on whichever replica, so one promotion is one
-- trace. NULL for promotions requested before tracing.
ALTER TABLE promotions ADD COLUMN traceparent TEXT;
