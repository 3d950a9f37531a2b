//! The few SDP (RFC 8866) lines an RTP input needs: each `m=` section's port, payload type,
//! `rtpmap` and `fmtp`, and the `c=` address (a multicast group to join).

use std::collections::BTreeMap;
use std::net::IpAddr;

use thiserror::Error;

/// SDP text beyond this is refused (a description is a few hundred bytes).
pub const SDP_CAP: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP is {0} bytes; at most 64 KiB")]
    TooLong(usize),
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
    #[error("no video or audio m= section")]
    NoMedia,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `video`, `audio`, …
    pub kind: String,
    pub port: u16,
    pub payload_type: u8,
    /// The `rtpmap` encoding name, upper-cased (`H264`, `MPEG4-GENERIC`, `MP2T`).
    pub encoding: String,
    pub clock_rate: u32,
    /// `fmtp` parameters, keys lower-cased.
    pub fmtp: BTreeMap<String, String>,
    /// The section's `c=` address, else the session's.
    pub connection: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub media: Vec<Media>,
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    // "IN IP4 239.1.1.1/32" — the TTL and count suffixes are not needed.
    let mut parts = value.split_whitespace();
    let (_, _, address) = (parts.next()?, parts.next()?, parts.next()?);
    address.split('/').next()?.parse().ok()
}

impl SessionDescription {
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        if text.len() > SDP_CAP {
            return Err(SdpError::TooLong(text.len()));
        }
        let mut session_connection = None;
        let mut media: Vec<Media> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |why: &str| SdpError::Line {
                line,
                why: why.to_string(),
            };
            let raw = raw.trim_end_matches('\r');
            let Some((key, value)) = raw.split_once('=') else {
                continue;
            };
            match key {
                "c" => {
                    let address = parse_connection(value);
                    match media.last_mut() {
                        Some(m) => m.connection = address.or(m.connection),
                        None => session_connection = address,
                    }
                }
                "m" => {
                    let mut parts = value.split_whitespace();
                    let kind = parts
                        .next()
                        .ok_or_else(|| error("m= without a media type"))?;
                    let port = parts
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| error("m= without a port number"))?;
                    let _protocol = parts.next();
                    let payload_type = parts
                        .next()
                        .and_then(|p| p.parse().ok())
                        .filter(|pt: &u8| *pt < 128)
                        .ok_or_else(|| error("m= without a payload type (0–127)"))?;
                    media.push(Media {
                        kind: kind.to_string(),
                        port,
                        payload_type,
                        encoding: String::new(),
                        clock_rate: 0,
                        fmtp: BTreeMap::new(),
                        connection: session_connection,
                    });
                }
                "a" => {
                    let Some(m) = media.last_mut() else { continue };
                    if let Some(rtpmap) = value.strip_prefix("rtpmap:") {
                        let Some((pt, map)) = rtpmap.split_once(' ') else {
                            return Err(error("rtpmap without an encoding"));
                        };
                        if pt.trim().parse::<u8>().ok() != Some(m.payload_type) {
                            continue;
                        }
                        let mut fields = map.trim().split('/');
                        m.encoding = fields.next().unwrap_or_default().to_ascii_uppercase();
                        m.clock_rate = fields
                            .next()
                            .and_then(|r| r.parse().ok())
                            .filter(|r| *r > 0)
                            .ok_or_else(|| error("rtpmap without a clock rate"))?;
                    } else if let Some(fmtp) = value.strip_prefix("fmtp:") {
                        let Some((pt, params)) = fmtp.split_once(' ') else {
                            continue;
                        };
                        if pt.trim().parse::<u8>().ok() != Some(m.payload_type) {
                            continue;
                        }
                        for param in params.split(';') {
                            if let Some((k, v)) = param.split_once('=') {
                                m.fmtp
                                    .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        media.retain(|m| m.kind == "video" || m.kind == "audio");
        if media.is_empty() {
            return Err(SdpError::NoMedia);
        }
        Ok(SessionDescription { media })
    }
}

impl Media {
    /// `sprop-parameter-sets`: base64 NAL units separated by commas (undecodable ones skipped).
    pub fn sprop_parameter_sets(&self) -> Vec<Vec<u8>> {
        self.fmtp
            .get("sprop-parameter-sets")
            .map(|sets| sets.split(',').filter_map(base64).collect())
            .unwrap_or_default()
    }

    /// `config`: hex AudioSpecificConfig (RFC 3640) or StreamMuxConfig (MP4A-LATM, RFC 6416).
    pub fn config(&self) -> Option<Vec<u8>> {
        let hex = self.fmtp.get("config")?;
        if hex.len() % 2 != 0 || hex.len() > 64 {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect()
    }

    /// A numeric fmtp parameter (`sizelength`, `indexlength`, …).
    pub fn fmtp_number(&self, key: &str) -> Option<u8> {
        self.fmtp.get(key)?.parse().ok()
    }
}

/// Standard base64 (padding optional); `None` on anything else.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes().take_while(|c| *c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // What `ffmpeg -f rtp -sdp_file` writes for H.264 + AAC (two ports).
    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\na=tool:libavformat\r\nm=video 5004 RTP/AVP 96\r\nb=AS:2000\r\n\
        a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; \
        sprop-parameter-sets=Z0LAHtkDxWhAAAADAEAAAAwDxYuS,aMuMsg==; profile-level-id=42C01E\r\n\
        m=audio 5006 RTP/AVP 97\r\nc=IN IP4 239.1.2.3/16\r\nb=AS:128\r\n\
        a=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;\
        sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\n";

    #[test]
    fn reads_what_ffmpeg_writes() {
        let sdp = SessionDescription::parse(FFMPEG).unwrap();
        let [video, audio] = &sdp.media[..] else {
            panic!("{sdp:?}")
        };
        assert_eq!((video.port, video.payload_type), (5004, 96));
        assert_eq!(
            (video.encoding.as_str(), video.clock_rate),
            ("H264", 90_000)
        );
        let sets = video.sprop_parameter_sets();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0][0], 0x67);
        assert_eq!(sets[1], vec![0x68, 0xcb, 0x8c, 0xb2]);
        assert_eq!(video.connection, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(audio.encoding, "MPEG4-GENERIC");
        assert_eq!(audio.clock_rate, 48_000);
        assert_eq!(audio.config(), Some(vec![0x11, 0x90, 0x56, 0xe5, 0x00]));
        assert_eq!(audio.fmtp_number("sizelength"), Some(13));
        assert_eq!(audio.connection, Some("239.1.2.3".parse().unwrap()));
    }

    #[test]
    fn broken_descriptions_are_errors() {
        assert_eq!(SessionDescription::parse("v=0\n"), Err(SdpError::NoMedia));
        assert!(matches!(
            SessionDescription::parse("m=video x RTP/AVP 96\n"),
            Err(SdpError::Line { line: 1, .. })
        ));
        assert!(matches!(
            SessionDescription::parse("m=video 5000 RTP/AVP 300\n"),
            Err(SdpError::Line { .. })
        ));
        assert!(matches!(
            SessionDescription::parse("m=video 5000 RTP/AVP 96\na=rtpmap:96 H264\n"),
            Err(SdpError::Line { line: 2, .. })
        ));
        assert!(matches!(
            SessionDescription::parse(&"a".repeat(SDP_CAP + 1)),
            Err(SdpError::TooLong(_))
        ));
        let odd = SessionDescription::parse(
            "m=audio 5000 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/48000\na=fmtp:97 config=1Z;sprop-parameter-sets=!!\n",
        )
        .unwrap();
        assert_eq!(odd.media[0].config(), None);
        assert!(odd.media[0].sprop_parameter_sets().is_empty());
    }
}
