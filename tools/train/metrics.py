# SPDX-License-Identifier: AGPL-3.0-or-later
"""Plain-Python figures shared by training and tools/eval.py (no numpy
needed, so the plugin venv can import it)."""


def auroc(pos, neg):
    """Probability that a positive scores above a negative (ties count half)."""
    if not pos or not neg:
        return float("nan")
    scored = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    # rank-sum with average ranks for ties
    rank_sum = 0.0
    i = 0
    while i < len(scored):
        j = i
        while j < len(scored) and scored[j][0] == scored[i][0]:
            j += 1
        avg = (i + 1 + j) / 2.0
        rank_sum += avg * sum(1 for k in range(i, j) if scored[k][1] == 1)
        i = j
    n_pos, n_neg = len(pos), len(neg)
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def recall_at_fpr(pos, neg, fpr):
    """Share of positives scoring strictly above the threshold that lets at
    most fpr of the negatives through (a negative at the threshold counts as
    passing, so ties never help)."""
    if not pos or not neg:
        return float("nan")
    neg_sorted = sorted(neg, reverse=True)
    allowed = int(fpr * len(neg) + 1e-9)  # negatives allowed strictly above
    # threshold t = the (allowed+1)-th highest negative score: at most
    # `allowed` negatives are > t
    t = neg_sorted[allowed] if allowed < len(neg_sorted) else float("-inf")
    return sum(1 for s in pos if s > t) / len(pos)


def summary(pos, neg):
    return {"auroc": round(auroc(pos, neg), 4),
            "recall_at_fpr1": round(recall_at_fpr(pos, neg, 0.01), 4),
            "recall_at_fpr5": round(recall_at_fpr(pos, neg, 0.05), 4),
            "n_pos": len(pos), "n_neg": len(neg)}


def average_precision(records, n_gt):
    """records: [(confidence, is_true_positive)]; all-point interpolated AP."""
    if n_gt == 0:
        return float("nan")
    records = sorted(records, key=lambda r: -r[0])
    tp = fp = 0
    points = []
    for _, ok in records:
        if ok:
            tp += 1
        else:
            fp += 1
        points.append((tp / n_gt, tp / (tp + fp)))
    suffix_max = [0.0] * (len(points) + 1)
    for k in range(len(points) - 1, -1, -1):
        suffix_max[k] = max(points[k][1], suffix_max[k + 1])
    ap = 0.0
    prev_r = 0.0
    for k, (r, _) in enumerate(points):
        ap += (r - prev_r) * suffix_max[k]
        prev_r = r
    return ap
