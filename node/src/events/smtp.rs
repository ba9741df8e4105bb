//! A minimal SMTP client (RFC 5321) for notifications through the site's mail relay: EHLO, MAIL, RCPT,
//! DATA, QUIT, each reply checked, every step under a deadline. It speaks plain SMTP without AUTH, as
//! to a local relay (a smarthost or the host's MTA); TLS to the outside is that relay's job.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REPLY_LINE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SmtpError {
    #[error("smtp: {0}")]
    Io(#[from] std::io::Error),
    #[error("smtp: no answer in time")]
    Timeout,
    #[error("smtp: the relay answered {0}")]
    Refused(String),
    #[error("smtp: bad address {0:?}")]
    Address(String),
}

pub(crate) struct Relay {
    pub(crate) server: SocketAddr,
    pub(crate) from: String,
}

/// An address we put in an SMTP command: no brackets, spaces or line breaks, one `@`.
fn valid(addr: &str) -> bool {
    addr.len() <= 254
        && addr.matches('@').count() == 1
        && !addr.starts_with('@')
        && !addr.ends_with('@')
        && addr
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b','))
}

impl Relay {
    pub(crate) async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SmtpError> {
        for a in [to, self.from.as_str()] {
            if !valid(a) {
                return Err(SmtpError::Address(a.to_owned()));
            }
        }
        let stream = step(TcpStream::connect(self.server)).await??;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        expect(&mut rd, 220).await?;
        for (cmd, code) in [
            ("EHLO pbx".to_owned(), 250),
            (format!("MAIL FROM:<{}>", self.from), 250),
            (format!("RCPT TO:<{to}>"), 250),
            ("DATA".to_owned(), 354),
        ] {
            step(wr.write_all(format!("{cmd}\r\n").as_bytes())).await??;
            expect(&mut rd, code).await?;
        }
        let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
        let mut message = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n",
            from = self.from
        );
        for line in body.lines() {
            // Dot-stuffing (RFC 5321 §4.5.2).
            if line.starts_with('.') {
                message.push('.');
            }
            message.push_str(line);
            message.push_str("\r\n");
        }
        message.push_str(".\r\n");
        step(wr.write_all(message.as_bytes())).await??;
        expect(&mut rd, 250).await?;
        step(wr.write_all(b"QUIT\r\n")).await??;
        Ok(())
    }
}

async fn step<T>(f: impl Future<Output = T>) -> Result<T, SmtpError> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| SmtpError::Timeout)
}

/// Reads one (possibly multi-line) reply and checks its code.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(
    rd: &mut R,
    code: u16,
) -> Result<(), SmtpError> {
    loop {
        let mut line = String::new();
        let n = step(rd.read_line(&mut line)).await??;
        if n == 0 || line.len() > MAX_REPLY_LINE {
            return Err(SmtpError::Refused("a closed or garbled reply".into()));
        }
        let got: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if got != code {
            return Err(SmtpError::Refused(line.trim_end().to_owned()));
        }
        // "250-…" continues, "250 …" ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_addresses_reach_the_relay() {
        assert!(valid("ops@example.com"));
        for bad in [
            "",
            "ops",
            "@example.com",
            "ops@",
            "a@b@c",
            "ops@example.com>\r\nRCPT TO:<x@y",
            "o ps@x",
        ] {
            assert!(!valid(bad), "{bad:?}");
        }
    }
}
