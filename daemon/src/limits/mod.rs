//! Bandwidth as a setting: upload and download limits for the node, per
//! peer and per transfer, and alternative node limits on a schedule (like
//! transmission's alternative speeds). The settings ([`Limits`]) are kept
//! in the registry once changed at run time (`ringdropctl limits`); until
//! then the config's keys give them. [`Bandwidth`] applies them: every
//! byte served passes the node's and the peer's upload [`Pace`], every
//! byte fetched the node's, the peer's and the transfer's download pace.

mod bandwidth;
mod pace;

use serde::{Deserialize, Serialize};

pub use bandwidth::{Bandwidth, Downlink, Uplink};
pub use pace::Pace;

/// At most this many peers with limits of their own.
pub const MAX_PEER_LIMITS: usize = 1024;

/// The node's limits in bytes per second (`None`: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub up: Option<u64>,
    pub down: Option<u64>,
    /// While `alt` is in force, these replace `up` and `down` (an unset
    /// one leaves the normal limit).
    pub alt_up: Option<u64>,
    pub alt_down: Option<u64>,
    /// When the alternative limits are in force; `None`: never.
    pub alt: Option<Schedule>,
    /// Peers with limits of their own, on top of the node's.
    pub peers: Vec<PeerLimit>,
}

/// One peer's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLimit {
    pub id: [u8; 32],
    pub up: Option<u64>,
    pub down: Option<u64>,
}

impl Limits {
    /// The node's (up, down) limits at local time `at`.
    pub fn in_force(&self, at: LocalTime) -> (Option<u64>, Option<u64>) {
        if self.alt_active(at) {
            (self.alt_up.or(self.up), self.alt_down.or(self.down))
        } else {
            (self.up, self.down)
        }
    }

    /// Whether the alternative limits are in force at `at`.
    pub fn alt_active(&self, at: LocalTime) -> bool {
        self.alt.is_some_and(|s| s.contains(at))
    }

    /// Sets `peer`'s limits (both `None`: it has none of its own).
    pub fn set_peer(&mut self, id: [u8; 32], up: Option<u64>, down: Option<u64>) {
        self.peers.retain(|p| p.id != id);
        if up.is_some() || down.is_some() {
            self.peers.push(PeerLimit { id, up, down });
        }
    }
}

/// A local time of the week: day (0 Monday .. 6 Sunday) and minute of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub weekday: u8,
    pub minute: u16,
}

impl LocalTime {
    /// Now, in the machine's time zone.
    pub fn now() -> Self {
        // SAFETY: time(2) with a null pointer only returns the time; an
        // all-zero `tm` is a valid value for localtime_r to fill, and both
        // pointers are valid for the call.
        let t = unsafe { libc::time(std::ptr::null_mut()) };
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            return Self {
                weekday: 0,
                minute: 0,
            };
        }
        Self {
            // tm_wday counts from Sunday.
            weekday: ((tm.tm_wday + 6) % 7) as u8,
            minute: (tm.tm_hour * 60 + tm.tm_min) as u16,
        }
    }
}

/// When alternative limits apply: a daily span of minutes (it may run past
/// midnight, `22:00-06:00`) on some days of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Minutes after midnight; `from == to`: the whole day.
    pub from: u16,
    pub to: u16,
    /// Bit `d` set: day `d` (0 Monday .. 6 Sunday). A span past midnight
    /// belongs to the day it starts on.
    pub days: u8,
}

impl Schedule {
    /// Every minute of every day (a start for `alt_hours` or `alt_days`
    /// alone).
    pub const ALWAYS: Schedule = Schedule {
        from: 0,
        to: 0,
        days: EVERY_DAY,
    };
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
pub const EVERY_DAY: u8 = 0x7f;

impl Schedule {
    pub fn contains(&self, at: LocalTime) -> bool {
        let day = |d: u8| self.days & (1 << (d % 7)) != 0;
        let yesterday = (at.weekday + 6) % 7;
        if self.from == self.to {
            day(at.weekday)
        } else if self.from < self.to {
            day(at.weekday) && (self.from..self.to).contains(&at.minute)
        } else {
            (day(at.weekday) && at.minute >= self.from) || (day(yesterday) && at.minute < self.to)
        }
    }

    /// `08:00-18:00` into (from, to).
    pub fn parse_hours(s: &str) -> Result<(u16, u16), String> {
        let bad = || format!("{s:?} is not a span of hours: write it like 08:00-18:00");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        Ok((minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?))
    }

    /// `mon-fri`, `sat,sun`, `all` into a day mask.
    pub fn parse_days(s: &str) -> Result<u8, String> {
        let bad = || format!("{s:?} is not a set of days: write it like mon-fri, sat,sun or all");
        let day = |d: &str| DAYS.iter().position(|n| d.trim().eq_ignore_ascii_case(n));
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(EVERY_DAY);
        }
        let mut mask = 0u8;
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                    let mut d = a;
                    loop {
                        mask |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => mask |= 1 << day(part).ok_or_else(bad)?,
            }
        }
        Ok(mask)
    }

    /// `08:00-18:00`.
    pub fn hours(&self) -> String {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        format!("{}-{}", hm(self.from), hm(self.to))
    }

    /// `mon,tue,...` or `all`.
    pub fn days_text(&self) -> String {
        if self.days & EVERY_DAY == EVERY_DAY {
            return "all".into();
        }
        DAYS.iter()
            .enumerate()
            .filter(|(i, _)| self.days & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(weekday: u8, h: u16, m: u16) -> LocalTime {
        LocalTime {
            weekday,
            minute: h * 60 + m,
        }
    }

    #[test]
    fn working_hours_on_weekdays() {
        let (from, to) = Schedule::parse_hours("08:00-18:00").unwrap();
        let s = Schedule {
            from,
            to,
            days: Schedule::parse_days("mon-fri").unwrap(),
        };
        assert!(s.contains(at(0, 8, 0)));
        assert!(s.contains(at(4, 17, 59)));
        assert!(!s.contains(at(4, 18, 0)));
        assert!(!s.contains(at(5, 12, 0)), "saturday");
        assert_eq!(s.hours(), "08:00-18:00");
        assert_eq!(s.days_text(), "mon,tue,wed,thu,fri");
    }

    #[test]
    fn a_night_span_belongs_to_the_day_it_starts() {
        let (from, to) = Schedule::parse_hours("22:00-06:00").unwrap();
        let s = Schedule {
            from,
            to,
            days: Schedule::parse_days("fri").unwrap(),
        };
        assert!(s.contains(at(4, 23, 0)), "friday night");
        assert!(s.contains(at(5, 5, 59)), "saturday early is friday's night");
        assert!(!s.contains(at(4, 5, 0)), "friday early is thursday's night");
        assert_eq!(Schedule::parse_days("sat-mon").unwrap(), 0b110_0001);
    }

    #[test]
    fn alternative_limits_replace_the_set_ones() {
        let l = Limits {
            up: Some(100),
            down: Some(200),
            alt_up: Some(10),
            alt_down: None,
            alt: Some(Schedule {
                from: 0,
                to: 0,
                days: 1,
            }),
            peers: Vec::new(),
        };
        assert_eq!(l.in_force(at(0, 3, 0)), (Some(10), Some(200)));
        assert_eq!(l.in_force(at(1, 3, 0)), (Some(100), Some(200)));
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::parse_hours("8-18").is_err());
        assert!(Schedule::parse_hours("24:00-01:00").is_err());
        assert!(Schedule::parse_days("someday").is_err());
    }
}
