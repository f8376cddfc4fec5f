"""Constants with clinical or protocol meaning, each named once with its source.

Sources: DICOM PS3.4 Annex B (storage SOP classes), PS3.5 Annex A (transfer syntaxes),
PS3.16 CID 4014 (View for Mammography) and CID 4015 (View Modifier for Mammography).
"""

from __future__ import annotations

# --- Storage SOP classes (PS3.4 Table B.5-1) -----------------------------------------------
DM_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
DM_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
BREAST_PROJECTION_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.13.1.4"
BREAST_PROJECTION_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.13.1.5"
SECONDARY_CAPTURE_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
})
TOMOSYNTHESIS_CLASSES = frozenset({
    BREAST_TOMOSYNTHESIS, BREAST_PROJECTION_FOR_PRESENTATION, BREAST_PROJECTION_FOR_PROCESSING,
})
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

# --- Transfer syntaxes (PS3.5 Annex A) -----------------------------------------------------
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_P14 = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE})
LOSSLESS_ENCAPSULATED_SYNTAXES = frozenset({
    JPEG_LOSSLESS_P14, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG2000_LOSSLESS,
    HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, RLE_LOSSLESS,
})
LOSSY_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LS_NEAR_LOSSLESS, JPEG2000, HTJ2K})
SUPPORTED_SYNTAXES = NATIVE_SYNTAXES | LOSSLESS_ENCAPSULATED_SYNTAXES | LOSSY_SYNTAXES

# --- Views: CID 4014 View for Mammography (SNOMED CT and legacy SNOMED-RT "SRT" codes) --------
# Only CC and MLO are standard screening views; the others are named so rejections say which.
VIEW_CODES: dict[str, str] = {
    "399162004": "CC", "R-10242": "CC",
    "399368009": "MLO", "R-10226": "MLO",
    "399260004": "ML", "R-10224": "ML",
    "399352003": "LM", "R-10228": "LM",
    "399099002": "LMO", "R-10230": "LMO",
    "399196006": "FB", "R-10244": "FB",
    "399188001": "SIO", "R-102D0": "SIO",
    "441555000": "ISO", "R-40AAA": "ISO",
    "399192008": "XCCL", "R-1024A": "XCCL", "Y-X1770": "XCCL",
    "399101009": "XCCM", "R-1024B": "XCCM", "Y-X1771": "XCCM",
    "127457009": "SPECIMEN", "G-8310": "SPECIMEN",
}
STANDARD_VIEWS = ("CC", "MLO")

# --- View modifiers: CID 4015 View Modifier for Mammography ---------------------------------
VIEW_MODIFIER_CODES: dict[str, str] = {
    "399161006": "CLEAVAGE", "R-102D2": "CLEAVAGE",
    "399011000": "AXILLARY_TAIL", "R-102D1": "AXILLARY_TAIL",
    "399197002": "ROLLED_LATERAL", "R-102D3": "ROLLED_LATERAL",
    "399226006": "ROLLED_MEDIAL", "R-102D4": "ROLLED_MEDIAL",
    "414493004": "ROLLED_INFERIOR", "R-102CA": "ROLLED_INFERIOR",
    "415670009": "ROLLED_SUPERIOR", "R-102C9": "ROLLED_SUPERIOR",
    "399209000": "IMPLANT_DISPLACED", "R-102D5": "IMPLANT_DISPLACED",
    "399163009": "MAGNIFICATION", "R-102D6": "MAGNIFICATION",
    "399055006": "SPOT_COMPRESSION", "R-102D7": "SPOT_COMPRESSION",
    "399110001": "TANGENTIAL", "R-102C2": "TANGENTIAL",
    "442581004": "NIPPLE_IN_PROFILE", "R-40AB3": "NIPPLE_IN_PROFILE",
    "441752004": "ANTERIOR_COMPRESSION", "P2-00161": "ANTERIOR_COMPRESSION",
    "442593008": "INFRA_MAMMARY_FOLD", "R-40ABE": "INFRA_MAMMARY_FOLD",
    "442580003": "AXILLARY_TISSUE", "R-40AB2": "AXILLARY_TISSUE",
}

# ViewPosition (0018,5101) defined terms for MG, mapped to the same view names.
VIEW_POSITION_TERMS: dict[str, str] = {
    "CC": "CC", "MLO": "MLO", "ML": "ML", "LM": "LM", "LMO": "LMO", "FB": "FB", "SIO": "SIO",
    "ISO": "ISO", "XCCL": "XCCL", "XCCM": "XCCM", "XCC": "XCCL",
}

# ImageType values and series descriptions by which vendors mark 2D images synthesized from a
# tomosynthesis acquisition but stored as Digital Mammography (Hologic C-View, GE V-Preview,
# Siemens Insight 2D, Fujifilm S-View). PS3.3 C.8.11.7.1.4 reserves GENERATED_2D for this.
SYNTHESIZED_2D_IMAGE_TYPES = frozenset({"GENERATED_2D", "TOMO_GENERATED", "SYNTHESIZED", "SYNTHETIC_2D"})
SYNTHESIZED_2D_DESCRIPTIONS = ("C-VIEW", "CVIEW", "V-PREVIEW", "INSIGHT 2D", "INSIGHT2D", "S-VIEW",
                               "SYNTHESIZED", "SYNTHETIC 2D", "GENERATED 2D")

# --- Synthetic-data marker --------------------------------------------------------------------
# Files written by `mammobeam synth` carry this private block. Only such files may be read with the
# built-in demo pseudonym key; everything else needs a real key.
SYNTHETIC_PRIVATE_GROUP = 0x0009
SYNTHETIC_PRIVATE_CREATOR = "MAMMOBEAM SYNTHETIC"
SYNTHETIC_MARKER_ELEMENT = 0x01  # (0009,xx01) LO
SYNTHETIC_MARKER_VALUE = "SYNTHETIC DATA - NOT A PATIENT"
# UIDs minted by the synthetic generator use this root (a 2.25 UUID-derived root, PS3.5 B.2).
SYNTHETIC_UID_ROOT = "2.25.2087"

# --- Exam layout ------------------------------------------------------------------------------
LATERALITIES = ("L", "R")
STANDARD_EXAM_VIEWS = ("L-CC", "L-MLO", "R-CC", "R-MLO")
