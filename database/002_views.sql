-- Views for Metabase: pre-joined, friendly snake_case columns (Metabase humanises them).
-- Dashboards query these, never the tables. Every view returns rows once seeded.
--
-- v_portfolio_overview          one row per account (aggregate for KPIs)
--   as_of, account_id, account_number, customer_id, customer_name, customer_segment, region,
--   product, oem_name, asset_model, asset_category, asset_serial, risk_band, risk_band_order,
--   days_past_due, delinquency_bucket, exposure (financed amount not yet repaid), overdue_amount,
--   financed_amount,
--   is_current (1 when 0 days past due, else 0), is_delinquent (1 when risk_band = 'delinquent'),
--   is_at_risk (1 when risk_band = 'at_risk'), open_events
--   KPIs: count(*) = accounts, sum(exposure), avg(is_current) = share current,
--   avg(is_delinquent) = share delinquent, sum(exposure) by risk_band / oem_name / asset_model.
--
-- v_account_risk_dashboard      one row per account
--   as_of, account_id, account_number, customer_name, customer_segment, region, oem_name,
--   asset_model, asset_serial, risk_band, risk_band_order (1 delinquent, 2 at_risk, 3 healthy),
--   days_past_due, delinquency_bucket, overdue_amount, missed_instalments, balance_outstanding,
--   total_paid, last_payment_date, last_payment_amount, next_due_date, next_due_amount,
--   indicator_name, indicator_score, indicator_previous_score, indicator_change, open_events,
--   dpd_30_days_ago, dpd_60_days_ago
--
-- v_asset_telemetry_dashboard   one row per asset per day (daily telemetry)
--   reading_date, recorded_at, asset_id, asset_serial, asset_model, asset_category, oem_name,
--   account_number, customer_name, risk_band, telemetry_pattern, operating_hours,
--   utilisation_pct (operating hours / 8 h shift), engine_hours_total, fuel_level_pct,
--   latitude, longitude
--
-- v_open_events                 one row per open or acknowledged event
--   event_id, opened_at, opened_date, age_days, status, severity, severity_order
--   (1 critical, 2 warning, 3 info), event_type (code), event_name, category, account_number,
--   customer_name, asset_serial, asset_model, oem_name, risk_band, message, recommendation,
--   indicator_name, indicator_from, indicator_to, metric_name, metric_value, metric_baseline,
--   metric_comparison
--
-- v_event_timeline              one row per event or collection action, any status
--   occurred_at, occurred_date, source ('event' | 'collection_action'), item_type, title,
--   severity, status, account_number, customer_name, asset_serial, risk_band, detail
--
-- v_indicator_trends            two rows per indicator value: the previous and the latest score
--   score_date, is_latest, indicator_code, indicator_name, asset_id, asset_serial, asset_model,
--   oem_name, account_number, customer_name, risk_band, score, score_change, trend
--   ('falling' | 'stable' | 'rising'), watch_below, alert_below, message
--
-- v_poi_summary                 one row per POI
--   poi_id, poi_name, poi_type, owner_type, owner_name, latitude, longitude, radius_m, address,
--   visit_count, visits_last_7_days, distinct_assets, avg_dwell_hours, last_visit_at
--
-- v_collection_priority         one row per account not healthy, ranked
--   priority_rank (1 = call first), account_id, account_number, customer_name, contact_name,
--   contact_phone, risk_band, days_past_due, overdue_amount, balance_outstanding,
--   missed_instalments, last_payment_date, open_events, last_action, last_action_date,
--   last_action_outcome, next_action_date, recommended_action

CREATE VIEW v_portfolio_overview AS
SELECT
    acs.as_of,
    a.id AS account_id,
    a.account_number,
    c.id AS customer_id,
    c.name AS customer_name,
    c.segment AS customer_segment,
    c.region,
    a.product,
    o.name AS oem_name,
    am.name AS asset_model,
    am.category AS asset_category,
    s.serial_number AS asset_serial,
    acs.risk_band,
    CASE acs.risk_band WHEN 'delinquent' THEN 1 WHEN 'at_risk' THEN 2 ELSE 3 END AS risk_band_order,
    acs.days_past_due,
    dh.bucket AS delinquency_bucket,
    acs.principal_outstanding AS exposure,
    acs.overdue_amount,
    a.financed_amount,
    CASE WHEN acs.days_past_due = 0 THEN 1 ELSE 0 END AS is_current,
    CASE WHEN acs.risk_band = 'delinquent' THEN 1 ELSE 0 END AS is_delinquent,
    CASE WHEN acs.risk_band = 'at_risk' THEN 1 ELSE 0 END AS is_at_risk,
    acs.open_events
FROM accounts a
JOIN account_current_state acs ON acs.account_id = a.id
JOIN customers c ON c.id = a.customer_id
JOIN assets s ON s.account_id = a.id
JOIN asset_models am ON am.id = s.asset_model_id
JOIN oems o ON o.id = am.oem_id
LEFT JOIN delinquency_history dh ON dh.account_id = a.id AND dh.snapshot_on = acs.as_of;
COMMENT ON VIEW v_portfolio_overview IS
    'One row per account with exposure, risk band, OEM and model: aggregate it for portfolio KPIs.';

CREATE VIEW v_account_risk_dashboard AS
SELECT
    acs.as_of,
    a.id AS account_id,
    a.account_number,
    c.name AS customer_name,
    c.segment AS customer_segment,
    c.region,
    o.name AS oem_name,
    am.name AS asset_model,
    s.serial_number AS asset_serial,
    acs.risk_band,
    CASE acs.risk_band WHEN 'delinquent' THEN 1 WHEN 'at_risk' THEN 2 ELSE 3 END AS risk_band_order,
    acs.days_past_due,
    dh.bucket AS delinquency_bucket,
    acs.overdue_amount,
    acs.missed_instalments,
    acs.balance_outstanding,
    acs.total_paid,
    acs.last_payment_on AS last_payment_date,
    acs.last_payment_amount,
    acs.next_due_on AS next_due_date,
    acs.next_due_amount,
    ind.indicator_name,
    ind.score AS indicator_score,
    ind.previous_score AS indicator_previous_score,
    ind.score - ind.previous_score AS indicator_change,
    acs.open_events,
    dh30.days_past_due AS dpd_30_days_ago,
    dh60.days_past_due AS dpd_60_days_ago
FROM accounts a
JOIN account_current_state acs ON acs.account_id = a.id
JOIN customers c ON c.id = a.customer_id
JOIN assets s ON s.account_id = a.id
JOIN asset_models am ON am.id = s.asset_model_id
JOIN oems o ON o.id = am.oem_id
LEFT JOIN delinquency_history dh ON dh.account_id = a.id AND dh.snapshot_on = acs.as_of
LEFT JOIN delinquency_history dh30 ON dh30.account_id = a.id AND dh30.snapshot_on = acs.as_of - 30
LEFT JOIN delinquency_history dh60 ON dh60.account_id = a.id AND dh60.snapshot_on = acs.as_of - 60
LEFT JOIN LATERAL (
    SELECT idef.name AS indicator_name, iv.score, iv.previous_score
    FROM indicator_values iv
    JOIN indicator_definitions idef ON idef.id = iv.indicator_definition_id
    WHERE iv.asset_id = s.id
    ORDER BY iv.computed_on DESC, iv.id
    LIMIT 1
) ind ON true;
COMMENT ON VIEW v_account_risk_dashboard IS
    'One row per account: risk band, days past due, arrears, last and next payment, latest indicator, open events.';

CREATE VIEW v_asset_telemetry_dashboard AS
SELECT
    (rt.recorded_at AT TIME ZONE 'UTC')::date AS reading_date,
    rt.recorded_at,
    s.id AS asset_id,
    s.serial_number AS asset_serial,
    am.name AS asset_model,
    am.category AS asset_category,
    o.name AS oem_name,
    a.account_number,
    c.name AS customer_name,
    acs.risk_band,
    s.telemetry_pattern,
    rt.operating_hours,
    round(rt.operating_hours / 8.0 * 100, 1) AS utilisation_pct,
    rt.engine_hours_total,
    rt.fuel_level_pct,
    rt.latitude,
    rt.longitude
FROM raw_telemetry rt
JOIN assets s ON s.id = rt.asset_id
JOIN asset_models am ON am.id = s.asset_model_id
JOIN oems o ON o.id = am.oem_id
JOIN accounts a ON a.id = s.account_id
JOIN customers c ON c.id = a.customer_id
JOIN account_current_state acs ON acs.account_id = a.id;
COMMENT ON VIEW v_asset_telemetry_dashboard IS
    'Daily telemetry per asset with utilisation (operating hours / 8 h shift), position, OEM, model and risk band.';

CREATE VIEW v_open_events AS
SELECT
    e.id AS event_id,
    e.opened_at,
    (e.opened_at AT TIME ZONE 'UTC')::date AS opened_date,
    acs.as_of - (e.opened_at AT TIME ZONE 'UTC')::date AS age_days,
    e.status,
    ed.severity,
    CASE ed.severity WHEN 'critical' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END AS severity_order,
    ed.code AS event_type,
    ed.name AS event_name,
    ed.category,
    a.account_number,
    c.name AS customer_name,
    s.serial_number AS asset_serial,
    am.name AS asset_model,
    o.name AS oem_name,
    acs.risk_band,
    e.context ->> 'message' AS message,
    e.context ->> 'recommendation' AS recommendation,
    e.context -> 'indicator' ->> 'name' AS indicator_name,
    (e.context -> 'indicator' ->> 'from')::numeric AS indicator_from,
    (e.context -> 'indicator' ->> 'to')::numeric AS indicator_to,
    e.context -> 'metric' ->> 'name' AS metric_name,
    (e.context -> 'metric' ->> 'value')::numeric AS metric_value,
    (e.context -> 'metric' ->> 'baseline')::numeric AS metric_baseline,
    e.context -> 'metric' ->> 'comparison' AS metric_comparison
FROM events e
JOIN event_definitions ed ON ed.id = e.event_definition_id
JOIN accounts a ON a.id = e.account_id
JOIN customers c ON c.id = a.customer_id
JOIN assets s ON s.id = e.asset_id
JOIN asset_models am ON am.id = s.asset_model_id
JOIN oems o ON o.id = am.oem_id
JOIN account_current_state acs ON acs.account_id = a.id
WHERE e.status <> 'resolved';
COMMENT ON VIEW v_open_events IS
    'Open and acknowledged events with severity, type, opened time, the message and the recommendation from context.';

CREATE VIEW v_event_timeline AS
SELECT
    e.opened_at AS occurred_at,
    (e.opened_at AT TIME ZONE 'UTC')::date AS occurred_date,
    'event' AS source,
    ed.code AS item_type,
    ed.name AS title,
    ed.severity,
    e.status,
    a.account_number,
    c.name AS customer_name,
    s.serial_number AS asset_serial,
    acs.risk_band,
    e.context ->> 'message' AS detail
FROM events e
JOIN event_definitions ed ON ed.id = e.event_definition_id
JOIN accounts a ON a.id = e.account_id
JOIN customers c ON c.id = a.customer_id
JOIN assets s ON s.id = e.asset_id
JOIN account_current_state acs ON acs.account_id = a.id
UNION ALL
SELECT
    (ca.action_on + time '09:00') AT TIME ZONE 'UTC' AS occurred_at,
    ca.action_on AS occurred_date,
    'collection_action' AS source,
    ca.action_type AS item_type,
    -- Spelled out rather than initcap(): initcap gives "Reminder Sms" and "Phone Call".
    CASE ca.action_type
        WHEN 'reminder_sms' THEN 'Reminder SMS'
        WHEN 'phone_call' THEN 'Phone call'
        WHEN 'letter' THEN 'Letter'
        WHEN 'field_visit' THEN 'Field visit'
        WHEN 'payment_plan' THEN 'Payment plan'
        WHEN 'repossession_review' THEN 'Repossession review'
        ELSE replace(ca.action_type, '_', ' ')
    END || ': ' || replace(ca.outcome, '_', ' ') AS title,
    NULL AS severity,
    ca.outcome AS status,
    a.account_number,
    c.name AS customer_name,
    s.serial_number AS asset_serial,
    acs.risk_band,
    ca.notes AS detail
FROM collection_actions ca
JOIN accounts a ON a.id = ca.account_id
JOIN customers c ON c.id = a.customer_id
JOIN assets s ON s.account_id = a.id
JOIN account_current_state acs ON acs.account_id = a.id;
COMMENT ON VIEW v_event_timeline IS 'Events and collection actions on one time line, per account.';

CREATE VIEW v_indicator_trends AS
SELECT
    p.score_date,
    p.is_latest,
    idef.code AS indicator_code,
    idef.name AS indicator_name,
    s.id AS asset_id,
    s.serial_number AS asset_serial,
    am.name AS asset_model,
    o.name AS oem_name,
    a.account_number,
    c.name AS customer_name,
    acs.risk_band,
    p.score,
    iv.score - iv.previous_score AS score_change,
    CASE
        WHEN iv.score - iv.previous_score <= -5 THEN 'falling'
        WHEN iv.score - iv.previous_score >= 5 THEN 'rising'
        ELSE 'stable'
    END AS trend,
    idef.watch_below,
    idef.alert_below,
    iv.context ->> 'message' AS message
FROM indicator_values iv
CROSS JOIN LATERAL (
    VALUES (iv.previous_computed_on, false, iv.previous_score), (iv.computed_on, true, iv.score)
) AS p (score_date, is_latest, score)
JOIN indicator_definitions idef ON idef.id = iv.indicator_definition_id
JOIN assets s ON s.id = iv.asset_id
JOIN asset_models am ON am.id = s.asset_model_id
JOIN oems o ON o.id = am.oem_id
JOIN accounts a ON a.id = s.account_id
JOIN customers c ON c.id = a.customer_id
JOIN account_current_state acs ON acs.account_id = a.id;
COMMENT ON VIEW v_indicator_trends IS
    'Indicator scores over time: the previous and the latest score per asset, with change and trend.';

CREATE VIEW v_poi_summary AS
SELECT
    p.id AS poi_id,
    p.name AS poi_name,
    p.poi_type,
    p.owner_type,
    COALESCE(s.serial_number, c.name, o.name) AS owner_name,
    p.latitude,
    p.longitude,
    p.radius_m,
    p.address,
    COALESCE(v.visit_count, 0) AS visit_count,
    COALESCE(v.visits_last_7_days, 0) AS visits_last_7_days,
    COALESCE(v.distinct_assets, 0) AS distinct_assets,
    v.avg_dwell_hours,
    v.last_visit_at
FROM pois p
LEFT JOIN assets s ON s.id = p.asset_id
LEFT JOIN customers c ON c.id = p.customer_id
LEFT JOIN oems o ON o.id = p.oem_id
LEFT JOIN (
    SELECT
        pv.poi_id,
        count(*) AS visit_count,
        count(*) FILTER (
            WHERE pv.arrived_at >= ((SELECT max(as_of) FROM account_current_state) - 6)::timestamp AT TIME ZONE 'UTC'
        ) AS visits_last_7_days,
        count(DISTINCT pv.asset_id) AS distinct_assets,
        round(avg(extract(epoch FROM pv.departed_at - pv.arrived_at) / 3600), 1) AS avg_dwell_hours,
        max(pv.arrived_at) AS last_visit_at
    FROM poi_visits pv
    GROUP BY pv.poi_id
) v ON v.poi_id = p.id;
COMMENT ON VIEW v_poi_summary IS
    'One row per POI with position, type, owner and visit counts: map it by latitude/longitude.';

CREATE VIEW v_collection_priority AS
WITH last_action AS (
    SELECT DISTINCT ON (ca.account_id)
        ca.account_id, ca.action_type, ca.action_on, ca.outcome, ca.next_action_on
    FROM collection_actions ca
    ORDER BY ca.account_id, ca.action_on DESC, ca.id DESC
)
SELECT
    row_number() OVER (
        ORDER BY
            CASE acs.risk_band WHEN 'delinquent' THEN 1 WHEN 'at_risk' THEN 2 ELSE 3 END,
            acs.days_past_due DESC,
            acs.overdue_amount DESC,
            a.id
    ) AS priority_rank,
    a.id AS account_id,
    a.account_number,
    c.name AS customer_name,
    c.contact_name,
    c.contact_phone,
    acs.risk_band,
    acs.days_past_due,
    acs.overdue_amount,
    acs.balance_outstanding,
    acs.missed_instalments,
    acs.last_payment_on AS last_payment_date,
    acs.open_events,
    la.action_type AS last_action,
    la.action_on AS last_action_date,
    la.outcome AS last_action_outcome,
    la.next_action_on AS next_action_date,
    CASE
        WHEN acs.days_past_due >= 90 THEN 'Review for repossession; field visit to confirm the asset'
        WHEN acs.days_past_due >= 60 THEN 'Field visit and a formal arrears letter'
        WHEN acs.days_past_due >= 30 THEN 'Call today and agree a payment plan'
        WHEN acs.days_past_due > 0 THEN 'Reminder call about the missed instalment'
        ELSE 'Courtesy call: usage or indicator signals are weakening'
    END AS recommended_action
FROM accounts a
JOIN account_current_state acs ON acs.account_id = a.id
JOIN customers c ON c.id = a.customer_id
LEFT JOIN last_action la ON la.account_id = a.id
WHERE acs.risk_band <> 'healthy';
COMMENT ON VIEW v_collection_priority IS
    'Collections queue: accounts that are not healthy, ranked (delinquent first, then most days past due).';

-- Metabase shows a column's comment as its description: explain the columns a name cannot.
COMMENT ON COLUMN v_portfolio_overview.exposure IS
    'Financed amount not yet repaid (principal outstanding).';
COMMENT ON COLUMN v_portfolio_overview.is_current IS
    '1 when the account is 0 days past due, else 0: average it for the share current.';
COMMENT ON COLUMN v_portfolio_overview.is_delinquent IS
    '1 when the risk band is delinquent, else 0: average it for the share delinquent.';
COMMENT ON COLUMN v_portfolio_overview.is_at_risk IS '1 when the risk band is at_risk, else 0.';
COMMENT ON COLUMN v_portfolio_overview.risk_band_order IS 'Sort key: 1 delinquent, 2 at_risk, 3 healthy.';
COMMENT ON COLUMN v_account_risk_dashboard.risk_band_order IS 'Sort key: 1 delinquent, 2 at_risk, 3 healthy.';
COMMENT ON COLUMN v_account_risk_dashboard.balance_outstanding IS
    'Instalments still to pay, finance charges included.';
COMMENT ON COLUMN v_account_risk_dashboard.indicator_change IS
    'Latest indicator score minus the previous one (negative: getting worse).';
COMMENT ON COLUMN v_account_risk_dashboard.dpd_30_days_ago IS 'Days past due 30 days before the as-of date.';
COMMENT ON COLUMN v_account_risk_dashboard.dpd_60_days_ago IS 'Days past due 60 days before the as-of date.';
COMMENT ON COLUMN v_asset_telemetry_dashboard.utilisation_pct IS
    'Operating hours as a share of an 8-hour shift: above 100 means more than one shift.';
COMMENT ON COLUMN v_open_events.age_days IS 'Days from opening to the as-of date.';
COMMENT ON COLUMN v_open_events.severity_order IS 'Sort key: 1 critical, 2 warning, 3 info.';
COMMENT ON COLUMN v_indicator_trends.is_latest IS 'True for the latest score, false for the previous one.';
COMMENT ON COLUMN v_indicator_trends.trend IS
    'falling or rising when the score moved 5 points or more, else stable.';
COMMENT ON COLUMN v_collection_priority.priority_rank IS
    'Call order: 1 first (delinquent, then most days past due).';
