//! Scheduled backups: at the configured time in the cluster's time zone, daily or on one weekday,
//! the leader makes one. Also the node's housekeeping of its backups directory.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan as _};
use storage::Command;
use storage::backup::{BackupRecord, BackupSchedule, BackupSettings, BackupStatus};

use super::{Backups, Trigger, stamp};
use crate::time::now_millis;

/// How often the loop looks at the clock.
const TICK: Duration = Duration::from_secs(20);
/// A slot missed by more than this (the cluster was down) waits for the next one.
const CATCH_UP_MS: u64 = 60 * 60 * 1000;

/// The latest scheduled time at or before `now`, in zone `tz`.
pub(crate) fn last_slot(
    now: Timestamp,
    tz: &TimeZone,
    schedule: BackupSchedule,
) -> Option<Timestamp> {
    let local = now.to_zoned(tz.clone());
    let at = Time::new(
        i8::try_from(schedule.hour).ok()?,
        i8::try_from(schedule.minute).ok()?,
        0,
        0,
    )
    .ok()?;
    let mut date = local.date();
    // Eight days back reach every weekday, and today's slot when it is still to come.
    for _ in 0..8 {
        let weekday_ok = schedule.weekday.is_none_or(|w| {
            date.weekday().to_monday_zero_offset() == i8::try_from(w).unwrap_or(-1)
        });
        if weekday_ok {
            // A time skipped by a daylight-saving change resolves to the instant after the gap.
            let slot = date.to_datetime(at).to_zoned(tz.clone()).ok()?.timestamp();
            if slot <= now {
                return Some(slot);
            }
        }
        date = date.checked_sub(1.day()).ok()?;
    }
    None
}

/// Runs on every node: marks this node's interrupted backups failed, makes the scheduled backup
/// when this node leads, and deletes archives no record names.
pub(crate) async fn run_schedule(backups: Arc<Backups>) {
    let cluster = backups.cluster().clone();
    let me = cluster.node_id();
    let mut interrupted_checked = false;
    loop {
        tokio::time::sleep(TICK).await;
        if !interrupted_checked {
            interrupted_checked = mark_interrupted(&backups).await;
        }
        // A directory listing and a read per archive: cheap enough for every tick.
        backups.sweep();
        if cluster.current_leader() != Some(me) {
            continue;
        }
        let reader = cluster.reader();
        let Some(settings) = reader
            .get::<BackupSettings>(BackupSettings::KEY)
            .ok()
            .flatten()
        else {
            continue;
        };
        let Some(schedule) = settings.schedule else {
            continue;
        };
        let zone_name = crate::sip::cluster_zone(reader);
        let zone = TimeZone::get(&zone_name).unwrap_or(TimeZone::UTC);
        let Some(slot) = last_slot(Timestamp::now(), &zone, schedule) else {
            continue;
        };
        let slot_ms = u64::try_from(slot.as_millisecond()).unwrap_or(0);
        if now_millis().saturating_sub(slot_ms) > CATCH_UP_MS {
            continue;
        }
        let id = format!("scheduled-{}", stamp(slot_ms));
        if reader.get::<BackupRecord>(&id).ok().flatten().is_some() {
            continue;
        }
        // `create` claims the slot; the result is recorded, logged and raised as an event there.
        let _ = backups
            .create(Trigger::Scheduled {
                slot_millis: slot_ms,
            })
            .await;
    }
}

/// A backup this node had running when it stopped will never finish: say so. True once done.
async fn mark_interrupted(backups: &Backups) -> bool {
    let cluster = backups.cluster();
    let Ok(all) = cluster.reader().list::<BackupRecord>() else {
        return false;
    };
    let busy = backups.busy.try_lock().is_err();
    for mut b in all {
        if b.node_id != cluster.node_id() || b.status != BackupStatus::Running || busy {
            continue;
        }
        b.status = BackupStatus::Failed;
        b.error = Some("interrupted: the node stopped while writing it".into());
        b.finished_at = Some(now_millis());
        let cmd = Command::PutBackup {
            record: Box::new(b),
            create: false,
        };
        if cluster.propose(cmd).await.is_err() {
            return false;
        }
    }
    !busy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_daily_slot_is_today_once_passed_else_yesterday() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let daily = BackupSchedule {
            weekday: None,
            hour: 3,
            minute: 30,
        };
        // 02:30 UTC is 03:30 in Berlin in winter.
        assert_eq!(
            last_slot(at("2026-12-01T02:31:00Z"), &berlin, daily),
            Some(at("2026-12-01T02:30:00Z"))
        );
        assert_eq!(
            last_slot(at("2026-12-01T02:29:00Z"), &berlin, daily),
            Some(at("2026-11-30T02:30:00Z"))
        );
    }

    #[test]
    fn a_weekly_slot_goes_back_to_its_weekday() {
        // Sunday (6) 23:00 UTC; 2026-12-01 is a Tuesday.
        let weekly = BackupSchedule {
            weekday: Some(6),
            hour: 23,
            minute: 0,
        };
        assert_eq!(
            last_slot(at("2026-12-01T12:00:00Z"), &TimeZone::UTC, weekly),
            Some(at("2026-11-29T23:00:00Z"))
        );
        // On the Sunday itself, before and after the time.
        assert_eq!(
            last_slot(at("2026-12-06T22:59:00Z"), &TimeZone::UTC, weekly),
            Some(at("2026-11-29T23:00:00Z"))
        );
        assert_eq!(
            last_slot(at("2026-12-06T23:00:00Z"), &TimeZone::UTC, weekly),
            Some(at("2026-12-06T23:00:00Z"))
        );
    }

    #[test]
    fn a_time_skipped_by_daylight_saving_still_runs_that_day() {
        // 2026-03-29: Berlin skips from 02:00 to 03:00.
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let daily = BackupSchedule {
            weekday: None,
            hour: 2,
            minute: 30,
        };
        let slot = last_slot(at("2026-03-29T12:00:00Z"), &berlin, daily).unwrap();
        assert_eq!(slot.to_zoned(berlin).date(), jiff::civil::date(2026, 3, 29));
    }

    #[test]
    fn bad_times_give_no_slot() {
        let bad = BackupSchedule {
            weekday: None,
            hour: 25,
            minute: 0,
        };
        assert_eq!(
            last_slot(at("2026-12-01T12:00:00Z"), &TimeZone::UTC, bad),
            None
        );
    }
}
