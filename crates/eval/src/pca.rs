//! Principal components of a cloud of points: the plane a toy's trajectories are projected on in
//! the report (the paper's PCA figure of the NN toy).

/// The top principal axes of a set of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The points' mean.
    pub mean: Vec<f64>,
    /// Unit axes, by decreasing variance.
    pub axes: Vec<Vec<f64>>,
    /// The variance along each axis.
    pub variances: Vec<f64>,
    /// The points' total variance (the trace of their covariance).
    pub total_variance: f64,
}

impl Pca {
    /// The top `k` principal axes of `points` (each of one length; at least one). The covariance
    /// is divided by `n`; its eigenvectors come from cyclic Jacobi rotations, exact to rounding
    /// for the toys' dimensions (10, 50). Each axis's sign makes its largest coordinate positive.
    pub fn fit(points: &[Vec<f64>], k: usize) -> Option<Self> {
        let d = points.first()?.len();
        if d == 0 || points.iter().any(|p| p.len() != d) {
            return None;
        }
        let n = points.len() as f64;
        let mut mean = vec![0.0; d];
        for p in points {
            mean.iter_mut().zip(p).for_each(|(m, x)| *m += x / n);
        }
        let mut cov = vec![vec![0.0; d]; d];
        for p in points {
            for i in 0..d {
                let di = p[i] - mean[i];
                for j in i..d {
                    cov[i][j] += di * (p[j] - mean[j]) / n;
                }
            }
        }
        for i in 0..d {
            for j in 0..i {
                cov[i][j] = cov[j][i];
            }
        }
        let total_variance = (0..d).map(|i| cov[i][i]).sum();
        let (values, vectors) = jacobi_eigen(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let axes = order
            .iter()
            .take(k)
            .map(|&c| {
                let mut v: Vec<f64> = (0..d).map(|r| vectors[r][c]).collect();
                let big = v
                    .iter()
                    .copied()
                    .fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
                if big < 0.0 {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                v
            })
            .collect();
        let variances = order.iter().take(k).map(|&c| values[c].max(0.0)).collect();
        Some(Self {
            mean,
            axes,
            variances,
            total_variance,
        })
    }

    /// The coordinates of `x` along the axes, from the mean.
    pub fn project(&self, x: &[f64]) -> Vec<f64> {
        self.axes
            .iter()
            .map(|a| {
                a.iter()
                    .zip(x)
                    .zip(&self.mean)
                    .map(|((a, x), m)| a * (x - m))
                    .sum()
            })
            .collect()
    }

    /// The point of the axes' span (through the mean) at coordinates `c`.
    pub fn point(&self, c: &[f64]) -> Vec<f64> {
        let mut x = self.mean.clone();
        for (a, ci) in self.axes.iter().zip(c) {
            x.iter_mut().zip(a).for_each(|(x, a)| *x += ci * a);
        }
        x
    }

    /// The share of the total variance the axes explain (1 when the points have none).
    pub fn explained(&self) -> f64 {
        if self.total_variance > 0.0 {
            self.variances.iter().sum::<f64>() / self.total_variance
        } else {
            1.0
        }
    }
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = a.len();
    let mut v: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let scale: f64 = a.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale || off == 0.0 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                if a[p][q] == 0.0 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points `offset + s_i u + t_i w` along orthonormal `u`, `w`: the corners of nested
    /// rectangles `(±3k, ±k/2)`, so that `s` and `t` have mean 0, sample covariance exactly 0
    /// and var(s) > var(t): the sample's principal axes are `u` and `w` themselves.
    fn plane(offset: &[f64], u: &[f64], w: &[f64]) -> Vec<Vec<f64>> {
        let mut pts = Vec::new();
        for k in 1..=10 {
            for (sx, ty) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
                let (s, t) = (0.3 * k as f64 * sx, 0.05 * k as f64 * ty);
                pts.push(
                    (0..u.len())
                        .map(|i| offset[i] + s * u[i] + t * w[i])
                        .collect(),
                );
            }
        }
        pts
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn recovers_the_plane_of_offset_points_in_order_of_variance() {
        // Catches: no centring (the offset would dominate the first axis), axes sorted by
        // increasing variance, unnormalised or wrongly rotated eigenvectors.
        let r = 0.5f64.sqrt();
        let u = [r, 0.0, r, 0.0, 0.0];
        let w = [0.0, 0.6, 0.0, 0.8, 0.0];
        let offset = [10.0, -4.0, 7.0, 2.0, 30.0];
        let pts = plane(&offset, &u, &w);
        let pca = Pca::fit(&pts, 2).unwrap();
        assert!(
            (dot(&pca.axes[0], &u).abs() - 1.0).abs() < 1e-10,
            "{:?}",
            pca.axes[0]
        );
        assert!(
            (dot(&pca.axes[1], &w).abs() - 1.0).abs() < 1e-10,
            "{:?}",
            pca.axes[1]
        );
        assert!(pca.variances[0] > pca.variances[1]);
        assert!((pca.explained() - 1.0).abs() < 1e-10);
        // Projecting and lifting back is the identity on points of the plane.
        for p in &pts {
            let back = pca.point(&pca.project(p));
            assert!(p.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-9));
        }
    }

    #[test]
    fn the_variances_are_the_covariance_eigenvalues() {
        // The corners of a box with variances 4, 1, 0.25 along its (rotated) axes: the sum of the
        // top two over the trace is (4 + 1) / 5.25.
        let (a, b) = (0.8, 0.6);
        let mut pts = Vec::new();
        for k in 0..8 {
            let sign = |bit: u32| if k >> bit & 1 == 1 { -1.0 } else { 1.0 };
            let (x, y, z) = (2.0 * sign(0), sign(1), 0.5 * sign(2));
            pts.push(vec![a * x - b * y, b * x + a * y, z]);
        }
        let pca = Pca::fit(&pts, 2).unwrap();
        assert!(
            (pca.variances[0] - 4.0).abs() < 1e-12,
            "{:?}",
            pca.variances
        );
        assert!(
            (pca.variances[1] - 1.0).abs() < 1e-12,
            "{:?}",
            pca.variances
        );
        assert!((pca.explained() - 5.0 / 5.25).abs() < 1e-12);
        assert!(Pca::fit(&[vec![1.0, 2.0], vec![1.0]], 1).is_none());
    }
}
