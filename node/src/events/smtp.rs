//! E-mail notifications through the site's mail relay, with lettre: one SMTP session per message
//! (no pool: events are rare), STARTTLS off, opportunistic or required, AUTH when configured, the
//! whole session under one deadline. What stays ours: the address rule the API also applies, the
//! message's wording and the relay's settings.

use std::time::Duration;

use lettre::message::header::ContentTransferEncoding;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Body, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::EventsError;
use crate::config::{EventsSection, Starttls};

/// lettre bounds only the TCP connect with its own timeout (on tokio): replies are read without one,
/// so the whole session (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT) has a deadline too.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// The EHLO name, as before lettre; a relay that insists on a FQDN sees the same name as it did.
const HELLO_NAME: &str = "pbx";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SmtpError {
    #[error("smtp: bad address {0:?}")]
    Address(String),
    #[error("smtp: building the message: {0}")]
    Message(#[from] lettre::error::Error),
    #[error("smtp: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
    #[error("smtp: the relay did not finish within {} s", SESSION_TIMEOUT.as_secs())]
    Timeout,
    #[error("smtp: attachment of type {0:?} not encodable")]
    Attachment(String),
}

/// A file attached to a message.
pub(crate) struct Attached<'a> {
    pub(crate) name: &'a str,
    pub(crate) content_type: &'static str,
    pub(crate) bytes: &'a [u8],
}

pub(crate) struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right-hand side of our Message-IDs: the sender's domain (RFC 5322 §3.6.4).
    id_domain: String,
    deadline: Duration,
}

/// An address we hand to the relay: no brackets, quotes, spaces or line breaks, one `@` (the rule
/// the API applies to e-mail recipients), and one lettre accepts as an address.
pub(crate) fn valid_address(addr: &str) -> bool {
    addr.len() <= 254
        && addr.matches('@').count() == 1
        && !addr.starts_with('@')
        && !addr.ends_with('@')
        && addr
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b','))
        && addr.parse::<Address>().is_ok()
}

fn parse_address(addr: &str) -> Result<Address, SmtpError> {
    if !valid_address(addr) {
        return Err(SmtpError::Address(addr.to_owned()));
    }
    addr.parse()
        .map_err(|_| SmtpError::Address(addr.to_owned()))
}

impl Relay {
    /// The relay `[events]` describes, or `None` without `smtp_server`. Reads the extra CA now, so a
    /// bad file stops the node at start rather than failing each e-mail.
    pub(crate) fn from_config(cfg: &EventsSection) -> Result<Option<Self>, EventsError> {
        if cfg.smtp_server.is_none() {
            return Ok(None);
        }
        cfg.check().map_err(EventsError::Smtp)?;
        let (host, port) = cfg
            .smtp_host_port()
            .ok_or_else(|| EventsError::Smtp("events.smtp_server: host:port".into()))?;
        let tls = match cfg.starttls {
            Starttls::Off => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(host.to_owned());
                if let Some(path) = &cfg.smtp_extra_ca_file {
                    for ca in read_cas(path)? {
                        params = params.add_root_certificate(ca);
                    }
                }
                let params = params
                    .build()
                    .map_err(|e| EventsError::Tls(format!("smtp TLS: {e}")))?;
                if mode == Starttls::Required {
                    Tls::Required(params)
                } else {
                    Tls::Opportunistic(params)
                }
            }
        };
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain(HELLO_NAME.to_owned()))
            .timeout(Some(CONNECT_TIMEOUT));
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            // lettre's `Credentials` has a redacting Debug; its `tracing` feature (which would log the
            // AUTH line) stays off.
            transport =
                transport.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = parse_address(&cfg.mail_from)
            .map_err(|_| EventsError::Smtp(format!("events.mail_from {:?}", cfg.mail_from)))?;
        Ok(Some(Self {
            transport: transport.build(),
            id_domain: from.domain().to_owned(),
            from: Mailbox::new(None, from),
            deadline: SESSION_TIMEOUT,
        }))
    }

    /// The message as it goes out: From, To, Subject, Date, Message-ID, plain UTF-8 text.
    fn message(&self, to: &str, subject: &str, body: &str) -> Result<Message, SmtpError> {
        let to = parse_address(to)?;
        // Our subjects are built from event kinds; no line break may reach a header whatever comes in.
        let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
        let id = format!("<{:032x}@{}>", rand::random::<u128>(), self.id_domain);
        Ok(Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .message_id(Some(id))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())?)
    }

    /// A plain-text message with one attachment (a voicemail's WAV).
    fn message_with(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        file: &Attached<'_>,
    ) -> Result<Message, SmtpError> {
        let to = parse_address(to)?;
        let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
        let id = format!("<{:032x}@{}>", rand::random::<u128>(), self.id_domain);
        // The file name goes into a header: only what is safe there.
        let name: String = file
            .name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect();
        let kind = ContentType::parse(file.content_type)
            .map_err(|_| SmtpError::Attachment(file.content_type.to_owned()))?;
        // Base64 whatever the bytes: binary audio must survive any relay.
        let encoded = Body::new_with_encoding(file.bytes.to_vec(), ContentTransferEncoding::Base64)
            .map_err(|_| SmtpError::Attachment(file.content_type.to_owned()))?;
        let parts = MultiPart::mixed()
            .singlepart(SinglePart::plain(body.to_owned()))
            .singlepart(Attachment::new(name).body(encoded, kind));
        Ok(Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject)
            .message_id(Some(id))
            .multipart(parts)?)
    }

    pub(crate) async fn send_with(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        file: &Attached<'_>,
    ) -> Result<(), SmtpError> {
        let message = self.message_with(to, subject, body, file)?;
        tokio::time::timeout(self.deadline, self.transport.send(message))
            .await
            .map_err(|_| SmtpError::Timeout)??;
        Ok(())
    }

    pub(crate) async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SmtpError> {
        let message = self.message(to, subject, body)?;
        tokio::time::timeout(self.deadline, self.transport.send(message))
            .await
            .map_err(|_| SmtpError::Timeout)??;
        Ok(())
    }
}

/// Every certificate in a PEM file, for a private relay's CA; a file with none is an error, not a
/// silent no-op.
fn read_cas(path: &std::path::Path) -> Result<Vec<Certificate>, EventsError> {
    let pem = std::fs::read(path).map_err(|source| EventsError::Ca {
        path: path.display().to_string(),
        source,
    })?;
    let bad = |why: String| EventsError::Tls(format!("{}: {why}", path.display()));
    let ders = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if ders.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    ders.into_iter()
        .map(|der| Certificate::from_der(der.to_vec()).map_err(|e| bad(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::TcpListener;

    #[test]
    fn only_plain_addresses_reach_the_relay() {
        assert!(valid_address("ops@example.com"));
        assert!(valid_address("pbx@localhost"));
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "a@b@c",
            "ops@example.com>\r\nRCPT TO:<x@y",
            "o ps@x",
            "ops@exa_mple..com",
        ] {
            assert!(!valid_address(bad), "{bad:?}");
        }
    }

    fn section(server: &str) -> EventsSection {
        EventsSection {
            smtp_server: Some(server.to_owned()),
            mail_from: "pbx@lab.test".to_owned(),
            ..EventsSection::default()
        }
    }

    fn relay(server: &str) -> Relay {
        Relay::from_config(&section(server)).unwrap().unwrap()
    }

    #[test]
    fn a_message_carries_date_id_subject_and_plain_text() {
        let r = relay("127.0.0.1:25");
        let m = r
            .message(
                "ops@lab.test",
                "[pbx] Warning: source_banned\r\nBcc: x@y",
                "banned\r\n.\r\n",
            )
            .unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("From: pbx@lab.test\r\n"), "{head}");
        assert!(head.contains("To: ops@lab.test\r\n"), "{head}");
        assert!(
            head.contains("Subject: [pbx] Warning: source_bannedBcc: x@y\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nDate: "), "{head}");
        assert!(head.contains("\r\nMessage-ID: <"), "{head}");
        assert!(head.contains("@lab.test>\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; charset=utf-8"),
            "{head}"
        );
        assert!(
            !head.contains("Bcc:\r\n") && !head.contains("\r\nBcc"),
            "{head}"
        );
        assert!(body.starts_with("banned"), "{body}");
        assert!(
            r.message("ops@lab.test>\r\nRCPT TO:<x@y", "s", "b")
                .is_err()
        );
    }

    #[test]
    fn a_message_with_an_attachment_is_multipart_with_the_file_in_base64() {
        let r = relay("127.0.0.1:25");
        let wav = b"RIFF\x24\x00\x00\x00WAVEfmt ";
        let file = Attached {
            name: "voicemail-1001\r\nX: y.wav",
            content_type: "audio/wav",
            bytes: wav,
        };
        let m = r
            .message_with("ops@lab.test", "New voicemail", "From 1001", &file)
            .unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(text.contains("multipart/mixed"), "{text}");
        assert!(text.contains("Content-Type: audio/wav"), "{text}");
        assert!(text.contains("filename=\"voicemail-1001Xy.wav\""), "{text}");
        assert!(!text.contains("\r\nX: y"), "{text}");
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(wav);
        assert!(text.contains(&encoded), "{text}");
        assert!(text.contains("From 1001"), "{text}");
    }

    #[test]
    fn the_relay_refuses_what_the_config_check_refuses() {
        let mut cfg = section("127.0.0.1:25");
        cfg.username = Some("pbx".into());
        assert!(matches!(
            Relay::from_config(&cfg),
            Err(EventsError::Smtp(_))
        ));
        let mut cfg = section("127.0.0.1:25");
        cfg.starttls = Starttls::Required;
        cfg.smtp_extra_ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            Relay::from_config(&cfg),
            Err(EventsError::Ca { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        cfg.smtp_extra_ca_file = Some(empty);
        assert!(matches!(Relay::from_config(&cfg), Err(EventsError::Tls(_))));
        assert!(
            Relay::from_config(&EventsSection::default())
                .unwrap()
                .is_none()
        );
    }

    /// A relay that answers the greeting and EHLO (offering no STARTTLS) and then `250` to anything,
    /// recording each line it reads; or, `silent`, one that accepts and never speaks.
    async fn fake_relay(silent: bool) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let mut seen = Vec::new();
            if silent {
                let mut line = String::new();
                let _ = rd.read_line(&mut line).await;
                return seen;
            }
            wr.write_all(b"220 fake ESMTP\r\n").await.unwrap();
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return seen;
                }
                let cmd = line.trim_end().to_owned();
                seen.push(cmd.clone());
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    b"250-fake\r\n250 8BITMIME\r\n"
                } else if cmd == "QUIT" {
                    b"221 bye\r\n"
                } else {
                    b"250 ok\r\n"
                };
                if wr.write_all(reply).await.is_err() || cmd == "QUIT" {
                    return seen;
                }
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn required_starttls_sends_nothing_to_a_relay_that_does_not_offer_it() {
        let (addr, task) = fake_relay(false).await;
        let mut cfg = section(&addr);
        cfg.starttls = Starttls::Required;
        cfg.username = Some("pbx".into());
        cfg.password = Some("s3cret".to_owned().into());
        let r = Relay::from_config(&cfg).unwrap().unwrap();
        let err = r.send("ops@lab.test", "s", "b").await.unwrap_err();
        assert!(matches!(err, SmtpError::Transport(_)), "{err}");
        let seen = task.await.unwrap();
        assert_eq!(seen.first().map(String::as_str), Some("EHLO pbx"));
        assert!(
            seen.iter()
                .all(|l| !l.starts_with("MAIL") && !l.starts_with("AUTH")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn opportunistic_starttls_falls_back_to_plain_when_not_offered() {
        let (addr, task) = fake_relay(false).await;
        let mut cfg = section(&addr);
        cfg.starttls = Starttls::Opportunistic;
        let r = Relay::from_config(&cfg).unwrap().unwrap();
        r.send("ops@lab.test", "s", "b").await.unwrap();
        let seen = task.await.unwrap();
        assert!(
            seen.contains(&"MAIL FROM:<pbx@lab.test>".to_owned()),
            "{seen:?}"
        );
        assert!(
            seen.contains(&"RCPT TO:<ops@lab.test>".to_owned()),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_relay_runs_into_the_deadline() {
        let (addr, task) = fake_relay(true).await;
        let mut r = relay(&addr);
        // A short real deadline: the workspace's tokio has no paused clock (no `test-util`).
        r.deadline = Duration::from_millis(300);
        let err = r.send("ops@lab.test", "s", "b").await.unwrap_err();
        assert!(matches!(err, SmtpError::Timeout), "{err}");
        task.abort();
    }
}
