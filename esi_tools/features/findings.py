"""Findings derived from measurements, with every clinical threshold in one documented place.

FINDINGS maps a stable snake_case id (downstream retrieval and captions key on it: ids may be added, never
renamed) to its title, the rule in words and the thresholds used. `derive(row, sex)` applies them to one
record's measurements. Thresholds follow the AHA/ACCF/HRS 2009 recommendations for the standardisation
and interpretation of the ECG (Part III-V) unless a note says otherwise.
"""

from __future__ import annotations

import math

# --- thresholds (one place) ------------------------------------------------------------------------------
TACHY_BPM = 100.0  # sinus tachycardia above 100 bpm
BRADY_BPM = 60.0  # sinus bradycardia below 60 bpm (PTB-XL's SBRAD follows the classic 60)
SINUS_P_FRACTION = 0.8  # sinus rhythm: a consistent P wave before at least 80 % of beats
ABSENT_P_FRACTION = 0.3  # P waves absent: fewer than 30 % of beats show one
IRREGULAR_RATIO = 0.08  # median |successive RR difference| / mean RR above 8 %: irregular rhythm
AF_P_FRACTION = 0.5  # irregular and P waves before fewer than half the beats: possible atrial fibrillation
PR_LONG_MS = 200.0  # first-degree AV block: PR > 200 ms
PR_SHORT_MS = 120.0  # short PR: PR < 120 ms
QRS_WIDE_MS = 120.0  # wide QRS (complete bundle branch block range): QRS >= 120 ms
QRS_INCOMPLETE_MS = 110.0  # incomplete conduction delay: 110 <= QRS < 120 ms
QTC_LONG_MS = {"M": 450.0, "F": 460.0, None: 460.0}  # prolonged QTc (Bazett): >= 450 ms men, >= 460 women
QTC_SHORT_MS = 390.0  # short QTc (Bazett): <= 390 ms
AXIS_LEFT_DEG = -30.0  # left axis deviation: -30 to -90 degrees
AXIS_RIGHT_DEG = 90.0  # right axis deviation: +90 to +180 degrees
LOW_VOLTAGE_LIMB_MV = 0.5  # low voltage: every limb-lead QRS peak-to-peak < 0.5 mV ...
LOW_VOLTAGE_PRECORDIAL_MV = 1.0  # ... or every precordial QRS peak-to-peak < 1.0 mV
SOKOLOW_LYON_MV = 3.5  # LVH voltage: S(V1) + max R(V5, V6) >= 3.5 mV ...
CORNELL_MV = {"M": 2.8, "F": 2.0, None: 2.8}  # ... or Cornell R(aVL) + S(V3) > 2.8 mV men, 2.0 mV women
RVH_R_V1_MV = 0.7  # RVH voltage: R(V1) >= 0.7 mV ...
RVH_SOKOLOW_MV = 1.05  # ... or R(V1) + S(V5 or V6) >= 1.05 mV, both only with QRS < 120 ms (RBBB mimics)
ST_ELEVATION_MV = 0.1  # ST elevation at J+60 ms >= 0.1 mV in two contiguous leads ...
ST_ELEVATION_V2V3_MV = 0.2  # ... >= 0.2 mV in V2-V3 (the AHA sex/age split simplified to its upper value)
ST_DEPRESSION_MV = -0.05  # ST depression at J+60 ms <= -0.05 mV in two contiguous leads
T_INVERSION_MV = -0.1  # T inversion: T <= -0.1 mV in two contiguous leads where T is normally upright
ECTOPIC_MIN = 1  # any beat of a different QRS shape or premature with a compensatory pause

# Anatomically contiguous lead pairs (Cabrera order for limb leads, neighbours for precordial leads).
CONTIGUOUS = [("aVL", "I"), ("I", "II"), ("II", "aVF"), ("aVF", "III"), ("V1", "V2"), ("V2", "V3"),
              ("V3", "V4"), ("V4", "V5"), ("V5", "V6"), ("I", "V6"), ("aVL", "V6")]
T_UPRIGHT_LEADS = ("I", "II", "aVF", "V3", "V4", "V5", "V6")  # leads where an inverted T is abnormal in adults

FINDINGS: dict[str, dict] = {
    "sinus_rhythm": {"title": "Sinus rhythm", "rule": "P before >= 80 % of beats, regular, 60-100 bpm",
                     "thresholds": {"p_fraction": SINUS_P_FRACTION, "bpm": [BRADY_BPM, TACHY_BPM]}},
    "sinus_tachycardia": {"title": "Sinus tachycardia", "rule": "sinus P waves and HR > 100 bpm",
                          "thresholds": {"bpm": TACHY_BPM}},
    "sinus_bradycardia": {"title": "Sinus bradycardia", "rule": "sinus P waves and HR < 60 bpm",
                          "thresholds": {"bpm": BRADY_BPM}},
    "irregular_rhythm": {"title": "Irregular rhythm", "rule": "median |dRR| / mean RR > 0.08",
                         "thresholds": {"rr_irregularity": IRREGULAR_RATIO}},
    "possible_atrial_fibrillation": {"title": "Possible atrial fibrillation",
                                     "rule": "irregular rhythm and P waves before < 50 % of beats",
                                     "thresholds": {"rr_irregularity": IRREGULAR_RATIO, "p_fraction": AF_P_FRACTION}},
    "absent_p_waves": {"title": "Absent P waves", "rule": "P waves before < 30 % of beats",
                       "thresholds": {"p_fraction": ABSENT_P_FRACTION}},
    "first_degree_av_block": {"title": "First-degree AV block", "rule": "PR > 200 ms",
                              "thresholds": {"pr_ms": PR_LONG_MS}},
    "short_pr": {"title": "Short PR interval", "rule": "PR < 120 ms", "thresholds": {"pr_ms": PR_SHORT_MS}},
    "wide_qrs": {"title": "Wide QRS", "rule": "QRS >= 120 ms", "thresholds": {"qrs_ms": QRS_WIDE_MS}},
    "incomplete_conduction_delay": {"title": "Incomplete intraventricular conduction delay",
                                    "rule": "110 <= QRS < 120 ms",
                                    "thresholds": {"qrs_ms": [QRS_INCOMPLETE_MS, QRS_WIDE_MS]}},
    "prolonged_qtc": {"title": "Prolonged QTc", "rule": "QTc (Bazett) >= 450 ms men / 460 ms women",
                      "thresholds": {"qtc_bazett_ms": {str(k): v for k, v in QTC_LONG_MS.items()}}},
    "short_qtc": {"title": "Short QTc", "rule": "QTc (Bazett) <= 390 ms", "thresholds": {"qtc_bazett_ms": QTC_SHORT_MS}},
    "left_axis_deviation": {"title": "Left axis deviation", "rule": "QRS axis -30 to -90 degrees",
                            "thresholds": {"deg": [-90.0, AXIS_LEFT_DEG]}},
    "right_axis_deviation": {"title": "Right axis deviation", "rule": "QRS axis +90 to +180 degrees",
                             "thresholds": {"deg": [AXIS_RIGHT_DEG, 180.0]}},
    "extreme_axis_deviation": {"title": "Extreme axis deviation", "rule": "QRS axis -90 to -180 degrees",
                               "thresholds": {"deg": [-180.0, -90.0]}},
    "low_voltage": {"title": "Low QRS voltage", "rule": "all limb leads < 0.5 mV or all precordial < 1.0 mV",
                    "thresholds": {"limb_mv": LOW_VOLTAGE_LIMB_MV, "precordial_mv": LOW_VOLTAGE_PRECORDIAL_MV}},
    "lvh_voltage": {"title": "LVH voltage criteria", "rule": "Sokolow-Lyon >= 3.5 mV or Cornell > 2.8/2.0 mV (M/F)",
                    "thresholds": {"sokolow_lyon_mv": SOKOLOW_LYON_MV,
                                   "cornell_mv": {str(k): v for k, v in CORNELL_MV.items()}}},
    "rvh_voltage": {"title": "RVH voltage criteria", "rule": "R(V1) >= 0.7 mV or R(V1)+S(V5/V6) >= 1.05 mV, QRS < 120 ms",
                    "thresholds": {"r_v1_mv": RVH_R_V1_MV, "rvh_sokolow_mv": RVH_SOKOLOW_MV}},
    "st_elevation": {"title": "ST elevation", "rule": "ST(J+60) >= 0.1 mV (0.2 in V2-V3) in 2 contiguous leads",
                     "thresholds": {"mv": ST_ELEVATION_MV, "v2v3_mv": ST_ELEVATION_V2V3_MV}},
    "st_depression": {"title": "ST depression", "rule": "ST(J+60) <= -0.05 mV in 2 contiguous leads",
                      "thresholds": {"mv": ST_DEPRESSION_MV}},
    "t_wave_inversion": {"title": "T-wave inversion", "rule": "T <= -0.1 mV in 2 contiguous leads (I, II, aVF, V3-V6)",
                         "thresholds": {"mv": T_INVERSION_MV}},
    "ectopic_beats": {"title": "Ectopic beats", "rule": ">= 1 beat of different QRS shape or premature with pause",
                      "thresholds": {"count": ECTOPIC_MIN}},
    "poor_signal_quality": {"title": "Poor signal quality", "rule": "record not usable (see quality_reason)",
                            "thresholds": {}},
}


def _ok(*values) -> bool:
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


def _contiguous(row: dict, test) -> bool:
    """True when `test(lead, value)` holds in both leads of at least one contiguous pair."""
    for a, b in CONTIGUOUS:
        va, vb = row.get(a), row.get(b)
        if _ok(va, vb) and test(a, va) and test(b, vb):
            return True
    return False


def derive(row: dict, sex: str | None = None) -> list[str]:
    """Finding ids for one record's measurements (`row` as in features.parquet); sex M/F or None."""
    if not row.get("usable", True):
        return ["poor_signal_quality"]
    sex = sex if sex in ("M", "F") else None
    out: list[str] = []
    hr, pf, irr = row.get("hr_mean_bpm"), row.get("p_present_fraction"), row.get("rr_irregularity")
    irregular = _ok(irr) and irr > IRREGULAR_RATIO
    sinus = _ok(pf, hr) and pf >= SINUS_P_FRACTION and not irregular
    if sinus:
        out.append("sinus_tachycardia" if hr > TACHY_BPM else "sinus_bradycardia" if hr < BRADY_BPM else "sinus_rhythm")
    if irregular:
        out.append("irregular_rhythm")
        if _ok(pf) and pf < AF_P_FRACTION:
            out.append("possible_atrial_fibrillation")
    if _ok(pf) and pf < ABSENT_P_FRACTION:
        out.append("absent_p_waves")
    pr, qrs, qtc, axis = row.get("pr_ms"), row.get("qrs_ms"), row.get("qtc_bazett_ms"), row.get("qrs_axis_deg")
    if _ok(pr) and pr > PR_LONG_MS:
        out.append("first_degree_av_block")
    if _ok(pr) and pr < PR_SHORT_MS:
        out.append("short_pr")
    if _ok(qrs) and qrs >= QRS_WIDE_MS:
        out.append("wide_qrs")
    elif _ok(qrs) and qrs >= QRS_INCOMPLETE_MS:
        out.append("incomplete_conduction_delay")
    if _ok(qtc) and qtc >= QTC_LONG_MS[sex]:
        out.append("prolonged_qtc")
    if _ok(qtc) and qtc <= QTC_SHORT_MS:
        out.append("short_qtc")
    if _ok(axis):
        if -90.0 <= axis < AXIS_LEFT_DEG:
            out.append("left_axis_deviation")
        elif AXIS_RIGHT_DEG < axis <= 180.0:
            out.append("right_axis_deviation")
        elif axis < -90.0:
            out.append("extreme_axis_deviation")
    if row.get("low_voltage"):
        out.append("low_voltage")
    sl, cornell = row.get("sokolow_lyon_mv"), row.get("cornell_mv")
    if (_ok(sl) and sl >= SOKOLOW_LYON_MV) or (_ok(cornell) and cornell > CORNELL_MV[sex]):
        out.append("lvh_voltage")
    rv1, rvs = row.get("r_amp_V1_mv"), row.get("rvh_sokolow_mv")
    if _ok(qrs) and qrs < QRS_WIDE_MS and ((_ok(rv1) and rv1 >= RVH_R_V1_MV) or (_ok(rvs) and rvs >= RVH_SOKOLOW_MV)):
        out.append("rvh_voltage")
    st = {lead: row.get(f"st_j60_{lead}_mv") for lead in _LEADS}
    if _contiguous(st, lambda lead, v: v >= (ST_ELEVATION_V2V3_MV if lead in ("V2", "V3") else ST_ELEVATION_MV)):
        out.append("st_elevation")
    if _contiguous(st, lambda lead, v: v <= ST_DEPRESSION_MV):
        out.append("st_depression")
    t = {lead: row.get(f"t_amp_{lead}_mv") for lead in T_UPRIGHT_LEADS}
    if _contiguous(t, lambda lead, v: v <= T_INVERSION_MV):
        out.append("t_wave_inversion")
    if (row.get("ectopic_beats") or 0) >= ECTOPIC_MIN:
        out.append("ectopic_beats")
    return out


_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
