"""HJ 212 codec (HJ/T 212-2005, HJ 212-2017, HJ 212-2025 framing): pure Python, no I/O.

Public API::

    Framer().feed(bytes) -> list[FrameResult]      # cut frames from a TCP stream
    decode_frame(frame) -> DecodedFrame             # never raises
    build_frames(cn, mn, pw, data_time, values, ...) -> list[str]
    build_data_ack(request) -> str | None           # 9014 answer when Flag.A = 1
"""

from stackwatch.hj212.builder import (
    FrameSpec,
    build_data_ack,
    build_frames,
    encode_segment,
    flag_value,
    format_number,
    frame_segment,
    make_qn,
)
from stackwatch.hj212.codes import (
    CODE_2005_TO_2017,
    CODE_2017_TO_2005,
    FACTORS,
    FactorInfo,
    factor_info,
    normalise_code,
)
from stackwatch.hj212.crc import crc16, crc16_bitwise, crc16_hex, crc16_table
from stackwatch.hj212.decoder import decode_frame, reassemble
from stackwatch.hj212.framing import MAX_SEGMENT, Framer, judge_record, split_frames
from stackwatch.hj212.model import CST, REASONS, DecodedFrame, FrameResult, issue_code
from stackwatch.hj212.segment import MAX_CP, parse_datatime

__all__ = [
    "CODE_2005_TO_2017",
    "CODE_2017_TO_2005",
    "CST",
    "FACTORS",
    "MAX_CP",
    "MAX_SEGMENT",
    "REASONS",
    "DecodedFrame",
    "FactorInfo",
    "FrameResult",
    "FrameSpec",
    "Framer",
    "build_data_ack",
    "build_frames",
    "crc16",
    "crc16_bitwise",
    "crc16_hex",
    "crc16_table",
    "decode_frame",
    "encode_segment",
    "factor_info",
    "flag_value",
    "format_number",
    "frame_segment",
    "issue_code",
    "judge_record",
    "make_qn",
    "normalise_code",
    "parse_datatime",
    "reassemble",
    "split_frames",
]
