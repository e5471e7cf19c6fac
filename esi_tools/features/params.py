"""Signal-processing constants of detection and delineation, in seconds/Hz/mV so they hold at any fs.

Clinical thresholds for findings live in findings.py; these are the algorithm's own knobs. The delineation
fractions were chosen on LUDB records 1-100 and are checked on records 101-200 (bench/bench_features.py).
"""

# --- filtering -------------------------------------------------------------------------------------------
HIGHPASS_HZ = 0.5  # removes baseline wander; zero-phase so ST levels are not shifted (AHA allows 0.67 Hz zero-phase)
LOWPASS_HZ = 40.0  # keeps the QRS slopes used for onsets/offsets, drops mains and EMG (capped at 0.8 Nyquist)
QRS_BAND_HZ = (5.0, 18.0)  # Pan-Tompkins band: QRS slope energy, little P/T energy

ANALYSIS_FS = 250.0  # above this, detection/delineation run on the cleaned signal decimated by fs // 250
# (alias-free after the 40-Hz low-pass; halves the work at 500 Hz at no cost in accuracy, see bench)

PERCENTILE_STEP_S = 0.02  # signal-level percentiles use one sample per 20 ms: QRS still fills 4-5 of them

# --- R-peak detection ------------------------------------------------------------------------------------
INTEGRATION_S = 0.08  # moving-window integration about one QRS wide
# Each lead's envelope is scaled to its own local beat level and the leads vote, weighted by quality:
LEVEL_WINDOW_S = 1.0  # local level: the largest envelope within +-0.5 s: a T wave sees its own QRS, a beat
# sees a bigger neighbour only above 120 bpm, and a gain change between parts of a record shifts nothing
LEVEL_PERCENTILE = 20  # a lead's typical beat: 20th percentile of its local level in clean stretches
LEVEL_FLOOR = 0.5  # the level never drops under half the typical beat: far from any QRS (a pause, slow rates)
# noise, P or U waves are not scaled up to beat size
BUSY_LEVEL_WINDOW_S = 1.6  # noise keeps a lead's envelope above 30 % of its level within +-0.8 s (a QRS is
BUSY_LEVEL = 0.3  # that near at >= 40 bpm) most of the time, beats do not:
BUSY_WINDOW_S = 1.0  # share of each second above it: clean LUDB leads 0.2 median, 0.54 at the 99th percentile;
BUSY_CLEAN, BUSY_NOISY = 0.4, 0.6  # 5-40 Hz noise bursts 0.86 median, 0.6 at the 10th: quality 1 below 0.4, 0 above 0.6
BUSY_SPREAD_S = 1.0  # a noisy stretch costs the lead its vote 0.5 s either side as well (burst edges)
AGREEMENT = 0.5  # a beat: the quality-weighted mean of the leads' scaled envelopes reaches half of full
# agreement (an artefact or T wave of one lead of two scores ~0.5 at its peak and is rejected by the T-wave
# test or the lead's lost vote; one of 3 leads of 12 scores ~0.3) ...
ONE_LEAD_THRESHOLD = 0.45  # ... or 0.45 where one lead holds all the weight (the others noisy, or absent)
WEIGHT_FLOOR = 0.02  # every present lead keeps this weight: when all are noisy, they vote equally
LEAD_BEAT_LEVEL = 0.5  # a lead's own beats (for its RR series): local maxima above half its beat level
SHORT_RR_FRACTION = 0.6  # an RR under 60 % of the lead's 75th-percentile RR is "short" (a T wave counted)
SHORT_RR_EXCESS = 0.25  # a lead with 25 points more short RRs than the record's cleanest lead loses its vote ...
MIN_LEAD_RRS = 5  # ... judged only where it and that lead have 5 RRs or more in clean stretches (2-4 RRs of a lead
# mostly in noise tell no rhythm: in atrial fibrillation they made lead II look implausible)
IMPLAUSIBLE_WEIGHT = 0.1  # ... yet where it is the only clean lead it still outvotes noisy ones
LEAD_MATCH, MATCH_S = 0.75, 0.12  # a lead agrees with the detected beats when 75 % of its own beats are
# among them (within 120 ms) and it has 75 % of them, in its clean stretches
MIN_RATE_AGREEMENT = 0.6  # under 60 % of the lead weight agreeing: the leads tell different rates, not usable
TIE_SEE = 0.3  # a lead shows a peak where its scaled envelope reaches 0.3 (a QRS beside a bigger beat does, a
# quiet stretch ~0.05). A peak the leads holding at most half the weight show (one lead of two: its artefact)
SPLIT_RR, WHOLE_RR = 0.6, 1.25  # is dropped when it splits an RR: an RR beside it under 60 % of the median of
LOCAL_RRS = 10  # the 10 RRs around it (local: rates change along a record) and the two at most 125 % of it,
# or a short RR at an end; a true beat beside the other lead's artefact is shown by one lead too, but rarely splits
REFRACTORY_S = 0.22  # nothing closer than 220 ms is a second beat (max ~270 bpm)
T_WAVE_S, T_WAVE_RATIO = 0.40, 0.6  # a peak within 400 ms of a beat and under 60 % of its score is its T wave
T_EDGE_RATIO = 0.75  # a peak in the first 400 ms under 75 % of the median beat's score: the T wave of a beat
# just before the record (unseen, so the stricter ratio)
R_REFINE_S = 0.06  # R is re-centred on the largest spatial magnitude within +-60 ms of the envelope peak,
R_CONSISTENT_S = 0.025  # then within +-25 ms of the record's median R-to-envelope-peak offset (one fiducial)

# --- beat windows ----------------------------------------------------------------------------------------
PRE_S = 0.45  # window before R: room for PR up to ~350 ms plus the P wave itself
POST_S = 0.70  # window after R: QT up to ~700 ms at slow rates
SMOOTH_S = 0.012  # spatial-velocity smoothing (about one sample at 100 Hz, 6 samples at 500 Hz)

# --- QRS -------------------------------------------------------------------------------------------------
QRS_SEARCH_BEFORE_S = 0.16  # QRS onset is looked for at most 160 ms before R
QRS_SEARCH_AFTER_S = 0.20  # QRS offset at most 200 ms after R (wide LBBB/paced complexes)
QRS_ON_FRACTION = 0.07  # onset: spatial velocity falls below this fraction of its QRS maximum
QRS_OFF_FRACTION = 0.06  # offset: lower, as the terminal QRS (RBBB R', S slur) is slow (PTB-XL CRBBB >= 120 ms)
ISO_WINDOW_S = 0.02  # the isoelectric level is the flattest 20 ms in the 100 ms before QRS onset
ISO_SEARCH_S = 0.10

# --- T wave ----------------------------------------------------------------------------------------------
T_START_AFTER_QRS_S = 0.06  # the T peak (an interior local maximum) is searched from J+60 ms ...
T_END_MAX_S = 0.65  # ... to at most R+650 ms ...
T_END_RR_FRACTION = 0.72  # ... and never past 72 % of the next RR interval (the next P wave)
T_SMOOTH_S = 0.03  # T is slow: 30 ms smoothing removes noise without moving the peak
T_LEAD_FRACTION = 0.0  # every lead with a T above 20 uV votes (0.3 = only big-T leads: worse on LUDB 1-100)
T_OFF_LAG_S = 0.010  # the tangent meets the baseline before cardiologists mark T end (LUDB 1-100); added back
T_CONSENSUS_S = 0.025  # a beat's T peak/offset straying > 25 ms from its record's median is replaced by it

# --- P wave ----------------------------------------------------------------------------------------------
P_SEARCH_S = 0.35  # P peak at most 350 ms before QRS onset ...
P_SEARCH_RR_FRACTION = 0.55  # ... and within the last 55 % of the preceding RR (not inside the previous T)
P_GAP_S = 0.02  # P must end at least 20 ms before QRS onset
P_SMOOTH_S = 0.04  # P is the slowest wave: 40 ms smoothing
P_ON_FRACTION = 0.20  # P onset/offset: magnitude falls below this fraction of the P peak
P_OFF_FRACTION = 0.25
P_MIN_MV = 0.03  # a P peak smaller than this (spatial magnitude, mV) is not a P wave
P_MIN_SNR = 2.5  # ... nor one below 2.5x the TP-segment noise
P_CONSISTENCY_S = 0.04  # a sinus P sits within 40 ms of the record's median PR; scattered peaks are not P waves

# --- beats -----------------------------------------------------------------------------------------------
ECTOPIC_CORR = 0.80  # QRS shape correlation with the median beat below this: ectopic (0.9 flagged 27 % of PTB-XL NORM)
ECTOPIC_LAG_S = 0.02  # ... best correlation over +-20 ms shifts, so R-peak jitter is not mistaken for shape
PREMATURE_RATIO = 0.80  # RR below 80 % of the median RR, followed by a longer one: a premature beat

# --- long records ----------------------------------------------------------------------------------------
SEGMENT_S = 30.0  # records longer than SEGMENT_S + 2 margins (34 s) are measured in segments of at most 30 s,
# so memory is bounded by the chunk, not the record length; 30 s: the 2 x 2-s margins cost 13 % (20 s: 20 %,
# and a 30-min record then measured slower per lead-second than 10-s records)
SEGMENT_MARGIN_S = 2.0  # each segment reads 2 s more on both sides: beats near its edges keep their whole
# window (0.45 s before R, 0.7 s after) and the 0.5-Hz high-pass has settled (zero-phase transient < 1 s)
CHUNK_UNIT_S = 10.0  # --chunk counts records of up to 10 s; a chunk of 34-s segments holds chunk x 10 s of signal
