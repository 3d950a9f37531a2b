//! Mapping an input's tracks onto the channel's fixed output tracks.
//!
//! Output tracks are numbered slots. An input track maps to the n-th output track of the same
//! class (video, audio, SCTE-35, other data with the same stream type), so the second encoder's
//! PIDs do not matter and the output PIDs never change.

use std::collections::HashMap;

use lunora_media::{Codec, Program, Track, TrackId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Video,
    Audio,
    Data(Codec),
}

fn class(codec: Codec) -> Class {
    if codec.is_video() {
        Class::Video
    } else if codec.is_audio() {
        Class::Audio
    } else {
        Class::Data(codec)
    }
}

/// The output program for the first input that goes on air: same tracks, slot ids.
pub(crate) fn output_program(input: &Program) -> Program {
    Program {
        tracks: input
            .tracks
            .iter()
            .enumerate()
            .map(|(slot, t)| Track {
                id: TrackId(slot as u16),
                codec: t.codec,
                language: t.language,
                descriptors: t.descriptors.clone(),
            })
            .collect(),
    }
}

/// Input track → output track. Also returns what did not fit, for the compatibility report.
pub(crate) fn map_tracks(
    output: &Program,
    input: &Program,
) -> (HashMap<TrackId, TrackId>, Vec<String>) {
    let mut map = HashMap::new();
    let mut problems = Vec::new();
    let mut used: HashMap<Class, usize> = HashMap::new();
    for track in &input.tracks {
        let class = class(track.codec);
        let nth = used.entry(class).or_default();
        let slot = output
            .tracks
            .iter()
            .filter(|t| self::class(t.codec) == class)
            .nth(*nth);
        *nth += 1;
        match slot {
            Some(out) => {
                if out.codec != track.codec {
                    problems.push(format!(
                        "{} replaces {} on output track {}",
                        track.codec.name(),
                        out.codec.name(),
                        out.id.0
                    ));
                }
                map.insert(track.id, out.id);
            }
            None => problems.push(format!(
                "extra {} track has no place in the output and is dropped",
                track.codec.name()
            )),
        }
    }
    (map, problems)
}

/// The output program with each mapped slot taking the input's codec (a PMT change, PIDs
/// unchanged), when codecs differ.
pub(crate) fn adopt_codecs(
    output: &Program,
    input: &Program,
    map: &HashMap<TrackId, TrackId>,
) -> Program {
    let mut adopted = output.clone();
    for track in &input.tracks {
        if let Some(slot) = map.get(&track.id)
            && let Some(out) = adopted.tracks.iter_mut().find(|t| t.id == *slot)
        {
            out.codec = track.codec;
        }
    }
    adopted
}

#[cfg(test)]
mod tests {

    use super::*;

    fn program(tracks: &[(u16, Codec)]) -> Program {
        Program {
            tracks: tracks
                .iter()
                .map(|(id, codec)| Track::new(TrackId(*id), *codec))
                .collect(),
        }
    }

    #[test]
    fn different_pids_map_by_class_and_order() {
        let output = output_program(&program(&[
            (0x100, Codec::H264),
            (0x101, Codec::AacAdts),
            (0x102, Codec::AacAdts),
        ]));
        let backup = program(&[
            (0x31, Codec::AacAdts),
            (0x30, Codec::H264),
            (0x32, Codec::AacAdts),
            (0x40, Codec::Scte35),
        ]);
        let (map, problems) = map_tracks(&output, &backup);
        assert_eq!(map[&TrackId(0x30)], TrackId(0));
        assert_eq!(map[&TrackId(0x31)], TrackId(1));
        assert_eq!(map[&TrackId(0x32)], TrackId(2));
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn codec_change_is_reported_and_adopted() {
        let output = output_program(&program(&[(1, Codec::H264)]));
        let hevc = program(&[(9, Codec::Hevc)]);
        let (map, problems) = map_tracks(&output, &hevc);
        assert_eq!(
            problems,
            vec!["hevc replaces h264 on output track 0".to_string()]
        );
        assert_eq!(
            adopt_codecs(&output, &hevc, &map).tracks[0].codec,
            Codec::Hevc
        );
    }
}
