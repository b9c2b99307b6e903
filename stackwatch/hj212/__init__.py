"""HJ 212 codec (HJ/T 212-2005, HJ 212-2017, HJ 212-2025 framing): pure Python, no I/O.

Public API::

    Framer().feed(bytes) -> list[FrameResult]      # cut frames from a TCP stream
    decode_frame(frame) -> DecodedFrame             # never raises
    build_frames(cn, mn, pw, data_time, values, ...) -> list[str]
    build_data_ack(request) -> str | None           # 9014 answer when Flag.A = 1
"""

from stackwatch.beijing_time import CST
from stackwatch.hj212.builder import (
    HISTORY_CNS,
    FrameSpec,
    build_answer,
    build_data_ack,
    build_frames,
    build_history_request,
    encode_segment,
    encrypted_frame,
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
from stackwatch.hj212.encryption import (
    DecryptionError,
    cn_requires_encryption,
    decrypt_record,
    encrypt_segment,
    is_encrypted,
    parse_key,
)
from stackwatch.hj212.framing import MAX_SEGMENT, Framer, judge_record, split_frames
from stackwatch.hj212.model import REASONS, DecodedFrame, FrameResult, issue_code
from stackwatch.hj212.redact import MASK, frame_digest, redact_credentials
from stackwatch.hj212.segment import MAX_CP, parse_datatime

__all__ = [
    "CODE_2005_TO_2017",
    "CODE_2017_TO_2005",
    "CST",
    "FACTORS",
    "HISTORY_CNS",
    "MASK",
    "MAX_CP",
    "MAX_SEGMENT",
    "REASONS",
    "DecodedFrame",
    "DecryptionError",
    "FactorInfo",
    "FrameResult",
    "FrameSpec",
    "Framer",
    "build_answer",
    "build_data_ack",
    "build_frames",
    "build_history_request",
    "cn_requires_encryption",
    "crc16",
    "crc16_bitwise",
    "crc16_hex",
    "crc16_table",
    "decode_frame",
    "decrypt_record",
    "encode_segment",
    "encrypt_segment",
    "encrypted_frame",
    "factor_info",
    "flag_value",
    "format_number",
    "frame_digest",
    "frame_segment",
    "is_encrypted",
    "issue_code",
    "judge_record",
    "make_qn",
    "normalise_code",
    "parse_datatime",
    "parse_key",
    "reassemble",
    "redact_credentials",
    "split_frames",
]
