"""The audit's lexicon: the clinical concepts a caption can claim, the phrases that name them, how they nest,
and the tolerances a number is checked with. One table, so what the audit reads is documented in one place.

A concept is claimed by any of its phrases (case-insensitive regular expressions, matched on word
boundaries). The same lexicon reads the statements recorded with an ECG (PTB-XL SCP descriptions, LUDB and
Challenge texts), so a caption that repeats its record's statements is supported by construction.
"""

from __future__ import annotations

import re

# concept -> (kind, phrases). kind: "rhythm", "rate" (checked against the measured rate), "diagnosis"
# (checked against recorded statements and measured findings), "global" (normal / abnormal ECG).
CONCEPTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sinus_rhythm": ("rhythm", (r"sinus (?:rhythm|tachycardia|bradycardia|arrhythmia)", r"\bNSR\b")),
    "atrial_fibrillation": ("rhythm", (r"atrial fibrillation", r"\bA-?fib\b", r"\bAF\b", r"irregularly irregular")),
    "atrial_flutter": ("rhythm", (r"atrial flutter", r"\bflutter\b")),
    "supraventricular_tachycardia": ("rhythm", (r"supraventricular tachycardia", r"\bP?SVT\b")),
    "junctional_rhythm": ("rhythm", (r"junctional (?:rhythm|escape)", r"nodal rhythm")),
    "ventricular_tachycardia": ("rhythm", (r"ventricular tachycardia", r"\bVT\b")),
    "sinus_arrhythmia": ("rhythm", (r"sinus arrhythmia",)),
    "irregular_rhythm": ("rhythm", (r"irregular(?:ly)? (?:irregular |rhythm|RR|R-R|heart ?beat|ventricular)",
                                    r"irregular RR", r"arrhythmi")),
    "pacing": ("rhythm", (r"\bpac(?:ed|ing)\b", r"pacemaker", r"pacing spikes?")),
    "premature_beats": ("rhythm", (r"premature", r"extrasystol", r"ectopic", r"\bP[VA]Cs?\b", r"bigemin", r"trigemin")),
    "tachycardia": ("rate", (r"tachycardi", r"\btachy\b")),
    "bradycardia": ("rate", (r"bradycardi", r"\bbrady\b")),
    "left_bundle_branch_block": ("diagnosis", (r"left bundle[- ]branch block", r"\bLBBB\b")),
    "right_bundle_branch_block": ("diagnosis", (r"right bundle[- ]branch block", r"\bRBBB\b")),
    "bundle_branch_block": ("diagnosis", (r"bundle[- ]branch block", r"\bBBB\b")),
    "first_degree_av_block": ("diagnosis", (r"first[- ]degree (?:AV |atrioventricular |heart )?block",
                                            r"1st[- ]degree (?:AV |atrioventricular )?block", r"\b1AVB\b",
                                            r"prolonged PR")),
    "second_degree_av_block": ("diagnosis", (r"second[- ]degree (?:AV |atrioventricular |heart )?block",
                                             r"2nd[- ]degree", r"Mobitz", r"Wenckebach")),
    "third_degree_av_block": ("diagnosis", (r"third[- ]degree (?:AV |atrioventricular |heart )?block",
                                            r"3rd[- ]degree", r"complete (?:AV |atrioventricular |heart )block")),
    "fascicular_block": ("diagnosis", (r"fascicular block", r"hemiblock", r"\bL[AP]FB\b")),
    "pre_excitation": ("diagnosis", (r"Wolff?-Parkinson-White", r"\bWPW\b", r"pre-?excitation", r"delta wave")),
    "conduction_delay": ("diagnosis", (r"(?:intraventricular )?conduction (?:delay|disturbance|defect)", r"\bIVCD\b",
                                       r"wide(?:ned)? QRS", r"QRS widening")),
    "left_axis_deviation": ("diagnosis", (r"left axis deviation", r"left(?:ward)? (?:QRS )?axis",)),
    "right_axis_deviation": ("diagnosis", (r"right axis deviation", r"right(?:ward)? (?:QRS )?axis")),
    "infarction": ("diagnosis", (r"infarct", r"\bN?STEMI\b", r"\bMI\b", r"myocardial injury", r"subendocardial injury",
                                 r"pathologic(?:al)? Q", r"Q waves?")),
    "ischaemia": ("diagnosis", (r"isch(?:a)?emi",)),
    "st_elevation": ("diagnosis", (r"ST[- ](?:segment )?elevation", r"elevated ST", r"ST elevat")),
    "st_depression": ("diagnosis", (r"ST[- ](?:segment )?depression", r"depressed ST", r"ST depress")),
    "t_wave_abnormality": ("diagnosis", (r"T[- ]wave (?:inversion|abnormalit|change|flattening)", r"inverted T",
                                         r"T abnormalit", r"T-?wave changes", r"low amplitude T")),
    "st_t_change": ("diagnosis", (r"ST[- ]T (?:wave )?(?:change|abnormalit)", r"repolari[sz]ation (?:abnormalit|change)",
                                  r"non-?specific ST", r"ST changes", r"digitalis", r"aneurysm", r"electrolyt")),
    "left_ventricular_hypertrophy": ("diagnosis", (r"left ventricular hypertrophy", r"\bLVH\b",
                                                   r"voltage criteria (?:\(QRS\) )?for left")),
    "right_ventricular_hypertrophy": ("diagnosis", (r"right ventricular hypertrophy", r"\bRVH\b",
                                                    r"voltage criteria (?:\(QRS\) )?for right")),
    "atrial_enlargement": ("diagnosis", (r"atrial (?:overload|enlargement|abnormality)", r"\bP (?:mitrale|pulmonale)\b")),
    "hypertrophy": ("diagnosis", (r"hypertroph",)),
    "low_voltage": ("diagnosis", (r"low (?:QRS )?voltage",)),
    "long_qt": ("diagnosis", (r"long QT", r"prolonged (?:corrected )?QTc?", r"QTc? prolongation")),
    "normal_ecg": ("global", (r"normal (?:12-lead )?(?:ECG|EKG|electrocardiogram|tracing)", r"within normal limits")),
    "abnormal_ecg": ("global", (r"abnormal (?:12-lead )?(?:ECG|EKG|electrocardiogram|tracing)",)),
}

# child -> parents: a claim of a parent is supported by any recorded child; "LBBB" also says "bundle branch block"
PARENTS: dict[str, tuple[str, ...]] = {
    "left_bundle_branch_block": ("bundle_branch_block",),
    "right_bundle_branch_block": ("bundle_branch_block",),
    "bundle_branch_block": ("conduction_delay",),
    "fascicular_block": ("conduction_delay",),
    "atrial_fibrillation": ("irregular_rhythm",),
    "sinus_arrhythmia": ("irregular_rhythm", "sinus_rhythm"),
    "premature_beats": ("irregular_rhythm",),
    "st_elevation": ("st_t_change",),
    "st_depression": ("st_t_change",),
    "t_wave_abnormality": ("st_t_change",),
    "ischaemia": ("st_t_change",),
    "left_ventricular_hypertrophy": ("hypertrophy",),
    "right_ventricular_hypertrophy": ("hypertrophy",),
    "atrial_enlargement": ("hypertrophy",),
    "long_qt": ("st_t_change",),
}

# Mutually exclusive with a recorded concept: claiming one while the record holds the other is contradicted
# even where the claim alone could not be checked (e.g. sinus rhythm on a record labelled atrial fibrillation).
EXCLUDES: dict[str, tuple[str, ...]] = {
    "sinus_rhythm": ("atrial_fibrillation", "atrial_flutter", "supraventricular_tachycardia", "junctional_rhythm",
                     "ventricular_tachycardia"),
    "atrial_fibrillation": ("sinus_rhythm", "atrial_flutter"),
    "atrial_flutter": ("sinus_rhythm", "atrial_fibrillation"),
    "normal_ecg": ("infarction", "bundle_branch_block", "left_bundle_branch_block", "right_bundle_branch_block",
                   "atrial_fibrillation", "atrial_flutter", "third_degree_av_block", "pacing",
                   "left_ventricular_hypertrophy", "st_elevation", "ischaemia"),
    "abnormal_ecg": ("normal_ecg",),
    "left_axis_deviation": ("right_axis_deviation",),
    "right_axis_deviation": ("left_axis_deviation",),
}

# Concepts a caption must not leave out when the record holds them (recorded or measured): omissions.
KEY_FINDINGS = ("atrial_fibrillation", "atrial_flutter", "left_bundle_branch_block", "right_bundle_branch_block",
                "third_degree_av_block", "second_degree_av_block", "pacing", "pre_excitation", "tachycardia")

# PTB-XL diagnostic classes: a statement of the class also records the class's concept.
SCP_CLASS = {"MI": "infarction", "STTC": "st_t_change", "HYP": "hypertrophy", "CD": "conduction_delay",
             "NORM": "normal_ecg"}
# PTB-XL codes whose description the phrases miss or read too narrowly, and what each records.
SCP_CODES = {"SR": ("sinus_rhythm",), "STACH": ("sinus_rhythm", "tachycardia"), "SBRAD": ("sinus_rhythm", "bradycardia"),
             "CLBBB": ("left_bundle_branch_block",), "ILBBB": ("conduction_delay",), "IRBBB": ("conduction_delay",),
             "CRBBB": ("right_bundle_branch_block",), "LPR": ("first_degree_av_block",),
             "PVC": ("premature_beats",), "PAC": ("premature_beats",), "PRC(S)": ("premature_beats",),
             "BIGU": ("premature_beats",), "TRIGU": ("premature_beats",), "SVARR": ("irregular_rhythm",),
             "PSVT": ("supraventricular_tachycardia", "tachycardia"), "SVTAC": ("supraventricular_tachycardia", "tachycardia"),
             "VCLVH": ("left_ventricular_hypertrophy",), "LAFB": ("left_axis_deviation", "fascicular_block"),
             "LPFB": ("right_axis_deviation", "fascicular_block"), "ABQRS": ("conduction_delay",),
             "QWAVE": ("infarction",), "NDT": ("t_wave_abnormality",), "LNGQT": ("long_qt",),
             "INVT": ("t_wave_abnormality",), "LOWT": ("t_wave_abnormality",), "NT_": ("t_wave_abnormality",),
             "TAB_": ("t_wave_abnormality",), "STD_": ("st_depression",), "STE_": ("st_elevation",),
             "HVOLT": ("left_ventricular_hypertrophy",), "SEHYP": ("hypertrophy",)}
# Measured findings (esi features) and what each records.
FINDING_CONCEPTS = {
    "sinus_rhythm": ("sinus_rhythm",), "sinus_tachycardia": ("sinus_rhythm", "tachycardia"),
    "sinus_bradycardia": ("sinus_rhythm", "bradycardia"), "irregular_rhythm": ("irregular_rhythm",),
    "possible_atrial_fibrillation": ("atrial_fibrillation",), "first_degree_av_block": ("first_degree_av_block",),
    "wide_qrs": ("conduction_delay",), "incomplete_conduction_delay": ("conduction_delay",),
    "prolonged_qtc": ("long_qt",), "left_axis_deviation": ("left_axis_deviation",),
    "right_axis_deviation": ("right_axis_deviation",), "extreme_axis_deviation": (),
    "low_voltage": ("low_voltage",), "lvh_voltage": ("left_ventricular_hypertrophy",),
    "rvh_voltage": ("right_ventricular_hypertrophy",), "st_elevation": ("st_elevation",),
    "st_depression": ("st_depression",), "t_wave_inversion": ("t_wave_abnormality",),
    "ectopic_beats": ("premature_beats",),
}

# Numbers: phrase -> measurement column(s) of esi features, and the tolerance (absolute, relative): a claim
# within max(abs, rel x measured) of any listed column is supported.
NUMBERS = {
    "rate": (("hr_mean_bpm",), 0.0, 0.10),  # rate +-10 %
    "lowest rate": (("hr_min_bpm",), 0.0, 0.10),  # "the lowest heart rate was 61 bpm"
    "highest rate": (("hr_max_bpm",), 0.0, 0.10),
    "PR": (("pr_ms",), 20.0, 0.10),  # intervals +-20 ms or +-10 %
    "QRS": (("qrs_ms",), 20.0, 0.10),
    "QT": (("qt_ms",), 20.0, 0.10),
    "QTc": (("qtc_bazett_ms", "qtc_fridericia_ms"), 20.0, 0.10),
    "P": (("p_ms",), 20.0, 0.10),
    "QRS axis": (("qrs_axis_deg",), 15.0, 0.0),  # axis +-15 degrees
    "P axis": (("p_axis_deg",), 15.0, 0.0),
    "T axis": (("t_axis_deg",), 15.0, 0.0),
}
BRADY_BPM, TACHY_BPM, RATE_TOLERANCE = 60.0, 100.0, 0.10  # rate words checked with the same +-10 %
AXIS_LEFT_DEG, AXIS_RIGHT_DEG, AXIS_TOLERANCE_DEG = -30.0, 90.0, 15.0

NEGATION = re.compile(r"\b(?:no|not|without|absence of|absent|negative for|ruled? out|free of|neither|nor|"
                      r"no evidence of|no sign of|no signs of)\b", re.IGNORECASE)
# A sentence opening like this quotes background knowledge, not a claim about this ECG (template passages).
BACKGROUND = re.compile(r"^\s*(?:Background:|For reference,|Relevant knowledge:|In general,|By definition,)",
                        re.IGNORECASE)

COMPILED = {name: [re.compile(p, re.IGNORECASE) for p in phrases] for name, (_, phrases) in CONCEPTS.items()}
# "sinus tachycardia" also claims a rate; "incomplete" bundle branch block is a conduction delay, not a BBB
IMPLIED_BY_PHRASE = {r"sinus tachycardia": ("tachycardia",), r"sinus bradycardia": ("bradycardia",),
                     r"sinus arrhythmia": ("sinus_arrhythmia",)}
INCOMPLETE = re.compile(r"\b(?:incomplete|partial)\s+(?:left |right )?bundle", re.IGNORECASE)


def ancestors(concept: str) -> set[str]:
    """The concept and everything it implies (LBBB -> bundle branch block -> conduction delay)."""
    seen, todo = set(), [concept]
    while todo:
        c = todo.pop()
        if c not in seen:
            seen.add(c)
            todo.extend(PARENTS.get(c, ()))
    return seen
