//! The cluster's clock for time conditions: an instant as a wall-clock date, weekday and minute in
//! the cluster's time zone (`system.time_zone`, UTC when unset or unknown), with the tz rules
//! bundled in the binary so every node decides alike.

use storage::model::{Setting, UnixMillis};
use storage::time_condition::LocalTime;

/// The setting holding the cluster's IANA time zone.
pub(crate) const TIME_ZONE: &str = "system.time_zone";

/// `at` as local time in zone `tz` (UTC when the zone is not known).
pub(crate) fn local_time(tz: &str, at: UnixMillis) -> LocalTime {
    let zone = jiff::tz::TimeZone::get(tz).unwrap_or(jiff::tz::TimeZone::UTC);
    let instant = i64::try_from(at)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let local = instant.to_zoned(zone);
    LocalTime {
        date: format!(
            "{:04}-{:02}-{:02}",
            local.year(),
            local.month(),
            local.day()
        ),
        weekday: local.weekday().to_monday_zero_offset() as u8,
        minute: (local.hour() as u16) * 60 + local.minute() as u16,
    }
}

/// The cluster's time zone, from its settings.
pub(crate) fn cluster_zone(reader: &storage::StateReader) -> String {
    reader
        .get::<Setting>(TIME_ZONE)
        .ok()
        .flatten()
        .map_or_else(|| "UTC".to_owned(), |s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 12:00:00 UTC, a Monday.
    const NOON_UTC: UnixMillis = 1_796_040_000_000;

    #[test]
    fn an_instant_reads_as_the_zones_wall_clock_with_summer_time() {
        let utc = local_time("UTC", NOON_UTC);
        assert_eq!(
            (utc.date.as_str(), utc.weekday, utc.minute),
            ("2026-11-30", 0, 720)
        );
        let berlin = local_time("Europe/Berlin", NOON_UTC);
        assert_eq!(berlin.minute, 13 * 60, "CET is UTC+1 in November");
        // 2026-07-01 12:00 UTC: CEST, UTC+2; a Wednesday.
        let july = local_time("Europe/Berlin", 1_782_907_200_000);
        assert_eq!(
            (july.date.as_str(), july.weekday, july.minute),
            ("2026-07-01", 2, 14 * 60)
        );
        // Across the date line: 12:00 UTC Monday is 01:00 Tuesday in Auckland (NZDT, UTC+13).
        let nz = local_time("Pacific/Auckland", NOON_UTC);
        assert_eq!(
            (nz.date.as_str(), nz.weekday, nz.minute),
            ("2026-12-01", 1, 60)
        );
        let unknown = local_time("Mars/Olympus_Mons", NOON_UTC);
        assert_eq!(unknown, utc, "an unknown zone reads as UTC");
    }
}
