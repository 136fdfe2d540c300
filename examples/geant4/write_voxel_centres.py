"""Write voxel_centres.csv for qcalo_fastsim: the shower-frame centres (mm) of a geometry's voxels.

    python write_voxel_centres.py photons voxel_centres.csv --layer-thickness 50 50 50 50 50

The arithmetic is qcalo.export.geant4.voxel_centres (tested against the DS1 binning XML).
"""

from __future__ import annotations

import argparse

import numpy as np

from qcalo.data.geometry import load_geometry
from qcalo.export.geant4 import voxel_centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("geometry", help="photons, pions or a CaloChallenge binning XML")
    parser.add_argument("out", help="CSV file to write")
    parser.add_argument("--layer-thickness", type=float, nargs="+", metavar="MM")
    args = parser.parse_args()
    geometry = load_geometry(args.geometry)
    thickness = args.layer_thickness or [50.0] * geometry.n_layers
    centres = voxel_centres(geometry, thickness)
    np.savetxt(args.out, centres, delimiter=",", header="x_mm,y_mm,z_mm", comments="", fmt="%.9g")


if __name__ == "__main__":
    main()
