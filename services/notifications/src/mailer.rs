//! Where email goes: an SMTP server (lettre's async transport over tokio,
//! rustls for TLS, pooled connections), or, without `--smtp-url`, one
//! `.eml` file per delivery under `--mail-dir`.
//!
//! The file for a delivery is named after its business key
//! (`order-confirmed-<order_id>.eml`) and written atomically (temporary
//! file, then rename), so a delivery written twice is still one file and
//! a reader never sees half a message.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};

use crate::{
    Error,
    delivery::SendError,
    settings::{NotificationsSettings, SmtpTarget, SmtpTls},
};

/// Sends rendered emails. Cheap to clone (the SMTP pool is shared).
#[derive(Clone)]
pub enum Mailer {
    /// Hand messages to an SMTP server.
    Smtp {
        /// The pooled transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// Longest time one message may take, all SMTP steps together.
        timeout: Duration,
        /// `host:port`, for logs.
        server: String,
    },
    /// Write each message to a file in this folder.
    Files {
        /// The folder (created when missing).
        dir: PathBuf,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Mailer {
    /// The mailer the settings ask for (validated settings expected).
    pub fn from_settings(settings: &NotificationsSettings) -> Result<Self, Error> {
        let Some(url) = &settings.smtp_url else {
            return Ok(Self::Files {
                dir: settings.mail_dir.clone(),
            });
        };
        let target = SmtpTarget::parse(url)?;
        let tls_params = || {
            TlsParameters::new(target.host.clone())
                .map_err(|e| Error::Config(format!("SMTP TLS for {}: {e}", target.host)))
        };
        let tls = match target.tls {
            SmtpTls::Required => Tls::Required(tls_params()?),
            SmtpTls::Opportunistic => Tls::Opportunistic(tls_params()?),
            SmtpTls::Implicit => Tls::Wrapper(tls_params()?),
            SmtpTls::None => Tls::None,
        };
        // "dangerous" only means: no TLS unless asked for; `tls` above always asks,
        // except for the explicit `tls=none`.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.host)
            .port(target.port)
            .tls(tls)
            .timeout(Some(settings.smtp_timeout));
        if let Some((user, password)) = &target.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self::Smtp {
            transport: builder.build(),
            timeout: settings.smtp_timeout,
            server: format!("{}:{}", target.host, target.port),
        })
    }

    /// Longest time a [`Mailer::send`] can take (the lease a delivery needs).
    pub fn max_duration(&self) -> Duration {
        match self {
            Self::Smtp { timeout, .. } => *timeout,
            Self::Files { .. } => Duration::from_secs(10),
        }
    }

    /// What it sends to, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Smtp { server, .. } => format!("SMTP server {server}"),
            Self::Files { dir } => format!(".eml files in {}", dir.display()),
        }
    }

    /// Send one message. `file_stem` names its file in file mode. Returns
    /// what happened, for the log (the server's answer or the file's path).
    pub async fn send(
        &self,
        message: &lettre::Message,
        file_stem: &str,
    ) -> Result<String, SendError> {
        match self {
            Self::Smtp {
                transport, timeout, ..
            } => {
                let sent = tokio::time::timeout(*timeout, transport.send(message.clone()))
                    .await
                    .map_err(|_| {
                        SendError::Transient(format!(
                            "SMTP server did not take the message within {timeout:?}"
                        ))
                    })?;
                match sent {
                    Ok(response) => Ok(format!(
                        "accepted by the SMTP server: {} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    )),
                    // 5xx: the server refuses this message for good (unknown
                    // mailbox, rejected content, bad credentials); another
                    // try will get the same answer.
                    Err(err) if err.is_permanent() => Err(SendError::Permanent(format!(
                        "SMTP server refused the message: {err}"
                    ))),
                    Err(err) => Err(SendError::Transient(format!("SMTP: {err}"))),
                }
            }
            Self::Files { dir } => {
                let path = write_eml(dir, file_stem, &message.formatted())
                    .await
                    .map_err(|e| {
                        SendError::Transient(format!("cannot write to {}: {e}", dir.display()))
                    })?;
                tracing::info!(path = %path.display(), "email written to file");
                Ok(format!("written to {}", path.display()))
            }
        }
    }
}

/// Write `bytes` to `<dir>/<stem>.eml` atomically. Returns the path.
async fn write_eml(dir: &Path, stem: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}.eml"));
    let tmp = dir.join(format!(".{safe}.{}.tmp", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&tmp, bytes).await?;
    if let Err(err) = tokio::fs::rename(&tmp, &path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eml_files_are_named_after_the_key_and_replaced_not_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_eml(dir.path(), "order-confirmed:0190", b"first")
            .await
            .unwrap();
        let b = write_eml(dir.path(), "order-confirmed:0190", b"second")
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.file_name().unwrap(), "order-confirmed-0190.eml");
        assert_eq!(std::fs::read(&a).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn smtp_settings_build_a_transport() {
        let mut s = NotificationsSettings::for_database("sqlite::memory:");
        assert!(matches!(
            Mailer::from_settings(&s).unwrap(),
            Mailer::Files { .. }
        ));
        s.smtp_url = Some("smtp://u:p@mail.example.com".into());
        let m = Mailer::from_settings(&s).unwrap();
        assert_eq!(m.describe(), "SMTP server mail.example.com:587");
        s.smtp_url = Some("smtps://mail.example.com".into());
        assert_eq!(
            Mailer::from_settings(&s).unwrap().describe(),
            "SMTP server mail.example.com:465"
        );
    }
}
