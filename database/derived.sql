-- Derived tables: computed from the transactions, so every snapshot agrees with them.
--
-- `provision seed` runs this after loading seeds/*, in the same transaction as the schema.
-- The as-of date comes from provision_meta. Rules:
--   * an instalment is past due on day D when its due_on < D and the payments made on or before
--     D against it add up to less than amount_due;
--   * days past due = D - due_on of the oldest past-due instalment (0 when none);
--   * risk band: delinquent at 30+ days past due; at_risk at 1-29 days past due, or when the
--     latest indicator score of the account's asset is below its watch level; healthy otherwise;
--   * utilisation = operating hours / 8-hour shift, averaged over the days that reported.

-- Days past due every 30 days back from the as-of date (six snapshots, from account opening).
INSERT INTO delinquency_history
    (account_id, snapshot_on, days_past_due, overdue_amount, missed_instalments, bucket)
SELECT
    a.id,
    snap.snapshot_on,
    d.days_past_due,
    d.overdue_amount,
    d.missed_instalments,
    CASE
        WHEN d.days_past_due = 0 THEN 'current'
        WHEN d.days_past_due < 30 THEN '1-29'
        WHEN d.days_past_due < 60 THEN '30-59'
        WHEN d.days_past_due < 90 THEN '60-89'
        ELSE '90+'
    END
FROM accounts a
CROSS JOIN (
    SELECT (m.as_of - 30 * k)::date AS snapshot_on
    FROM provision_meta m, generate_series(0, 5) AS k
) snap
CROSS JOIN LATERAL (
    SELECT
        COALESCE(snap.snapshot_on - min(owed.due_on), 0) AS days_past_due,
        COALESCE(sum(owed.amount_due - owed.paid), 0) AS overdue_amount,
        count(*) AS missed_instalments
    FROM (
        SELECT
            rs.due_on,
            rs.amount_due,
            COALESCE((
                SELECT sum(p.amount)
                FROM payments p
                WHERE p.account_id = rs.account_id
                  AND p.instalment_number = rs.instalment_number
                  AND p.paid_on <= snap.snapshot_on
            ), 0) AS paid
        FROM repayment_schedule rs
        WHERE rs.account_id = a.id AND rs.due_on < snap.snapshot_on
    ) owed
    WHERE owed.paid < owed.amount_due
) d
WHERE snap.snapshot_on >= a.opened_on;

-- Weekly roll-ups of daily operating hours and utilisation, from one pass over the telemetry: utilisation
-- is operating hours × 100 / 8 exactly, so its sum, average, minimum and maximum are those of the hours
-- times 12.5.
INSERT INTO metric_aggregates
    (asset_id, metric_definition_id, period, period_start, sample_count, value_sum, value_avg, value_min,
     value_max)
SELECT
    w.asset_id,
    md.id,
    'week',
    w.week_start,
    w.readings,
    round(w.hours_sum * x.factor, 2),
    round(w.hours_avg * x.factor, 2),
    round(w.hours_min * x.factor, 2),
    round(w.hours_max * x.factor, 2)
FROM (
    SELECT
        rt.asset_id,
        date_trunc('week', rt.recorded_at AT TIME ZONE 'UTC')::date AS week_start,
        count(*) AS readings,
        sum(rt.operating_hours) AS hours_sum,
        avg(rt.operating_hours) AS hours_avg,
        min(rt.operating_hours) AS hours_min,
        max(rt.operating_hours) AS hours_max
    FROM raw_telemetry rt
    GROUP BY rt.asset_id, date_trunc('week', rt.recorded_at AT TIME ZONE 'UTC')
) w
CROSS JOIN metric_definitions md
CROSS JOIN LATERAL (
    SELECT CASE md.code WHEN 'operating_hours_daily' THEN 1 ELSE 100 / 8.0 END AS factor
) x
WHERE md.code IN ('operating_hours_daily', 'utilisation_pct');

-- How often and how long each asset visits each POI.
INSERT INTO poi_visit_patterns
    (poi_id, asset_id, visit_count, first_visit_at, last_visit_at, avg_dwell_hours, visits_per_week)
SELECT
    pv.poi_id,
    pv.asset_id,
    count(*),
    min(pv.arrived_at),
    max(pv.arrived_at),
    round(avg(extract(epoch FROM pv.departed_at - pv.arrived_at) / 3600), 1),
    round(count(*) * 7.0 / GREATEST(7, m.as_of - min((pv.arrived_at AT TIME ZONE 'UTC')::date) + 1), 1)
FROM poi_visits pv
CROSS JOIN provision_meta m
GROUP BY pv.poi_id, pv.asset_id, m.as_of;

-- Per asset: last report, this week's and last week's utilisation, latest indicator, open events.
-- Days are UTC days, written as ranges of recorded_at so each asset's readings come from the index on
-- (asset_id, recorded_at).
INSERT INTO asset_current_state
    (asset_id, as_of, last_seen_at, latitude, longitude, engine_hours_total, operating_hours_7d,
     utilisation_7d_pct, utilisation_prior_7d_pct, latest_indicator_score, open_events)
SELECT
    s.id,
    m.as_of,
    last.recorded_at,
    last.latitude,
    last.longitude,
    last.engine_hours_total,
    COALESCE(wk.hours, 0),
    COALESCE(wk.utilisation, 0),
    COALESCE(prior.utilisation, 0),
    ind.score,
    (SELECT count(*) FROM events e WHERE e.asset_id = s.id AND e.status <> 'resolved')
FROM assets s
CROSS JOIN provision_meta m
JOIN LATERAL (
    SELECT rt.recorded_at, rt.latitude, rt.longitude, rt.engine_hours_total
    FROM raw_telemetry rt
    WHERE rt.asset_id = s.id AND rt.recorded_at < (m.as_of + 1)::timestamp AT TIME ZONE 'UTC'
    ORDER BY rt.recorded_at DESC
    LIMIT 1
) last ON true
LEFT JOIN LATERAL (
    SELECT sum(rt.operating_hours) AS hours, round(avg(rt.operating_hours) / 8 * 100, 1) AS utilisation
    FROM raw_telemetry rt
    WHERE rt.asset_id = s.id
      AND rt.recorded_at >= (m.as_of - 6)::timestamp AT TIME ZONE 'UTC'
      AND rt.recorded_at < (m.as_of + 1)::timestamp AT TIME ZONE 'UTC'
) wk ON true
LEFT JOIN LATERAL (
    SELECT round(avg(rt.operating_hours) / 8 * 100, 1) AS utilisation
    FROM raw_telemetry rt
    WHERE rt.asset_id = s.id
      AND rt.recorded_at >= (m.as_of - 13)::timestamp AT TIME ZONE 'UTC'
      AND rt.recorded_at < (m.as_of - 6)::timestamp AT TIME ZONE 'UTC'
) prior ON true
LEFT JOIN LATERAL (
    SELECT iv.score
    FROM indicator_values iv
    WHERE iv.asset_id = s.id AND iv.computed_on <= m.as_of
    ORDER BY iv.computed_on DESC, iv.id
    LIMIT 1
) ind ON true;

-- Per account: balance, arrears and risk band, from the schedule, payments and indicators.
INSERT INTO account_current_state
    (account_id, as_of, balance_outstanding, principal_outstanding, total_paid, days_past_due, overdue_amount, missed_instalments,
     last_payment_on, last_payment_amount, next_due_on, next_due_amount, risk_band, open_events)
SELECT
    a.id,
    m.as_of,
    owed.total_due - paid.total_paid,
    -- Instalments include finance charges, so the exposure is the financed amount not yet repaid:
    -- every payment repays principal in proportion (financed amount / total of instalments).
    round(a.financed_amount * (owed.total_due - paid.total_paid) / NULLIF(owed.total_due, 0), 2),
    paid.total_paid,
    dh.days_past_due,
    dh.overdue_amount,
    dh.missed_instalments,
    lp.paid_on,
    lp.amount,
    nd.due_on,
    nd.amount_due,
    CASE
        WHEN dh.days_past_due >= 30 THEN 'delinquent'
        WHEN dh.days_past_due > 0 OR COALESCE(ind.below_watch, false) THEN 'at_risk'
        ELSE 'healthy'
    END,
    (SELECT count(*) FROM events e WHERE e.account_id = a.id AND e.status <> 'resolved')
FROM accounts a
CROSS JOIN provision_meta m
JOIN delinquency_history dh ON dh.account_id = a.id AND dh.snapshot_on = m.as_of
CROSS JOIN LATERAL (
    SELECT COALESCE(sum(rs.amount_due), 0) AS total_due FROM repayment_schedule rs WHERE rs.account_id = a.id
) owed
CROSS JOIN LATERAL (
    SELECT COALESCE(sum(p.amount), 0) AS total_paid
    FROM payments p
    WHERE p.account_id = a.id AND p.paid_on <= m.as_of
) paid
LEFT JOIN LATERAL (
    SELECT p.paid_on, p.amount
    FROM payments p
    WHERE p.account_id = a.id AND p.paid_on <= m.as_of
    ORDER BY p.paid_on DESC, p.id DESC
    LIMIT 1
) lp ON true
LEFT JOIN LATERAL (
    -- The first instalment from today on that is not yet paid in full: one due today and already
    -- paid is not "next due".
    SELECT rs.due_on, rs.amount_due
    FROM repayment_schedule rs
    WHERE rs.account_id = a.id AND rs.due_on >= m.as_of
      AND rs.amount_due > COALESCE((
          SELECT sum(p.amount)
          FROM payments p
          WHERE p.account_id = rs.account_id
            AND p.instalment_number = rs.instalment_number
            AND p.paid_on <= m.as_of
      ), 0)
    ORDER BY rs.due_on
    LIMIT 1
) nd ON true
LEFT JOIN LATERAL (
    SELECT iv.score < idef.watch_below AS below_watch
    FROM assets s
    JOIN indicator_values iv ON iv.asset_id = s.id AND iv.computed_on <= m.as_of
    JOIN indicator_definitions idef ON idef.id = iv.indicator_definition_id
    WHERE s.account_id = a.id
    ORDER BY iv.computed_on DESC, iv.id
    LIMIT 1
) ind ON true;

-- Per customer: exposure and the worst risk band over its accounts.
INSERT INTO customer_current_state
    (customer_id, as_of, active_accounts, total_exposure, total_overdue, worst_days_past_due, risk_band,
     open_events)
SELECT
    c.id,
    m.as_of,
    count(a.id) FILTER (WHERE a.status = 'active'),
    COALESCE(sum(acs.principal_outstanding), 0),
    COALESCE(sum(acs.overdue_amount), 0),
    COALESCE(max(acs.days_past_due), 0),
    CASE COALESCE(max(CASE acs.risk_band WHEN 'delinquent' THEN 3 WHEN 'at_risk' THEN 2 ELSE 1 END), 1)
        WHEN 3 THEN 'delinquent'
        WHEN 2 THEN 'at_risk'
        ELSE 'healthy'
    END,
    COALESCE(sum(acs.open_events), 0)
FROM customers c
CROSS JOIN provision_meta m
LEFT JOIN accounts a ON a.customer_id = c.id
LEFT JOIN account_current_state acs ON acs.account_id = a.id
GROUP BY c.id, m.as_of;
