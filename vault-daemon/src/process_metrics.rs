//! The `process_*` family every Prometheus exporter is expected to have (CPU seconds, resident
//! memory, open and maximum file descriptors, start time), read from `/proc/self` at each
//! scrape. Not prefixed with `locker_`: dashboards and alerts written for any process apply.

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// What `/proc/self` says of this process now.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessFigures {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: i64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: i64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on open file descriptors (`None`: unlimited or unreadable).
    pub max_fds: Option<i64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Reads the figures; a file that cannot be read leaves its figures at 0 (a scrape never fails
/// for them).
pub fn read() -> ProcessFigures {
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let mut figures = ProcessFigures::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15, starttime 22.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        figures.cpu_seconds = (field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0)) / ticks;
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
            stat.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot, field(22)) {
            figures.start_time_seconds = boot + start / ticks;
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
                .map_or(0, |v| v * 1024)
        };
        figures.resident_bytes = kib("VmRSS:");
        figures.virtual_bytes = kib("VmSize:");
    }
    figures.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|entries| i64::try_from(entries.count()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    figures.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find_map(|line| line.strip_prefix("Max open files"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<i64>().ok())
        });
    figures
}

/// A registry (no prefix) holding `figures`, to be encoded beside the locker's own.
pub fn registry(figures: ProcessFigures) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        ConstCounter::new(figures.cpu_seconds),
    );
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        ConstGauge::new(figures.resident_bytes),
    );
    registry.register(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes",
        ConstGauge::new(figures.virtual_bytes),
    );
    registry.register(
        "process_open_fds",
        "Number of open file descriptors",
        ConstGauge::new(figures.open_fds),
    );
    if let Some(max) = figures.max_fds {
        registry.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            ConstGauge::new(max),
        );
    }
    registry.register(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds",
        ConstGauge::new(figures.start_time_seconds),
    );
    registry
}
