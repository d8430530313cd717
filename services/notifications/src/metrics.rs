//! The notifications service's metric names (recorded through the
//! `metrics` facade; the process-wide recorder is the platform's).

/// Notifications delivered, by channel and kind.
pub const SENT: &str = "jetshop_notifications_sent_total";
/// Deliveries given up on, by channel and kind.
pub const FAILED: &str = "jetshop_notifications_failed_total";
/// Failed attempts that will be retried, by channel.
pub const RETRIED: &str = "jetshop_notifications_retries_total";
/// Time to hand one notification over (SMTP, file or HTTP), by channel.
pub const SEND_DURATION: &str = "jetshop_notifications_send_duration_seconds";

/// The `# HELP` of every name above; call once the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(SENT, "Notifications delivered, by channel and kind.");
    describe_counter!(
        FAILED,
        "Notifications given up on (dead-lettered), by channel and kind."
    );
    describe_counter!(
        RETRIED,
        "Failed delivery attempts that will be retried, by channel."
    );
    describe_histogram!(
        SEND_DURATION,
        Unit::Seconds,
        "Time to hand one notification over (SMTP, file or webhook HTTP), by channel."
    );
}
