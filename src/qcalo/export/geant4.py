"""The Geant4 side of an exported model: where each voxel's energy is deposited.

The fast-simulation model of ``examples/geant4/`` (C++, ``QcaloFastSimModel``) does, for a
photon of energy E (MeV) entering the calorimeter at ``entry`` (mm) with unit ``direction``:

1. run the exported ONNX model on E and the noise → one shower (V,) MeV;
2. place voxel v at ``entry + x_v·u + y_v·w + z_v·direction`` (mm), where (x_v, y_v) =
   (r_mid cos α_mid, r_mid sin α_mid) are its CaloChallenge transverse coordinates
   (:class:`qcalo.data.geometry.Geometry` ``eta``/``phi``) and z_v the middle of its layer in a
   stack of layers of the given thicknesses; (u, w, direction) is the right-handed frame with
   u = CLHEP's ``direction.orthogonal().unit()`` and w = direction × u;
3. deposit every voxel with energy > 0 there, then kill the photon.

This module is that arithmetic in NumPy, line for line, so it is tested without Geant4, and
its inverse (:func:`voxel_index_of_positions`: a deposit's position → the voxel it lies in).

The same hook also runs inside Geant4 from Python (:func:`run_geant4_photons`, through the
optional ``geant4_pybind`` bindings, imported only when it is called): those bindings expose no
``G4VFastSimulationModel``, so a ``G4UserSteppingAction`` plays its part. When a photon's step
enters the calorimeter's ``G4Region``, the action runs the exported model on the photon's energy
and the event's noise (:func:`event_noise`: drawn from a generator seeded by ``(seed, event)``,
so it can be drawn again outside Geant4), places each voxel's energy at its centre, lets a
``G4Navigator`` find the Geant4 volume there (the calorimeter is built of one ``G4Tubs`` sector
per DS1 voxel, copy number = voxel index), hands the deposit to that volume's sensitive detector,
and kills the photon. The physics list holds transportation only, so no Geant4 data set is read.

Example::

    >>> from qcalo.data.geometry import load_geometry
    >>> centres = voxel_centres(load_geometry("photons"), [50.0] * 5)
    >>> centres.shape, float(centres[0, 2])
    ((368, 3), 25.0)
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcalo.data.geometry import Geometry, load_geometry

__all__ = [
    "Geant4Event",
    "Geant4Run",
    "clhep_orthogonal",
    "energy_deposits",
    "event_noise",
    "geant4_environment",
    "run_geant4_photons",
    "shower_frame",
    "stack_event_noise",
    "voxel_centres",
    "voxel_index_of_positions",
]


def voxel_centres(geometry: Geometry, layer_thickness_mm: Sequence[float]) -> np.ndarray:
    """Voxel centres (V, 3) mm in the shower frame: transverse (x, y) from the binning, depth z
    the middle of the voxel's layer when the L layers of the given thicknesses (mm) are stacked
    from z = 0 along the shower axis."""
    thickness = np.asarray(layer_thickness_mm, dtype=np.float64).reshape(-1)
    if thickness.shape != (geometry.n_layers,) or np.any(thickness <= 0):
        raise ValueError(
            f"layer_thickness_mm: expected {geometry.n_layers} positive thicknesses, got "
            f"{thickness.tolist()}"
        )
    middles = np.cumsum(thickness) - thickness / 2
    depth = middles[geometry.layer_index_of_voxel]
    return np.stack([geometry.eta, geometry.phi, depth], axis=1)


def clhep_orthogonal(v: np.ndarray) -> np.ndarray:
    """CLHEP's ``Hep3Vector::orthogonal()``: a vector orthogonal to ``v`` (3,), not normalised."""
    x, y, z = (float(c) for c in v)
    ax, ay, az = abs(x), abs(y), abs(z)
    if ax < ay:
        return np.array([0.0, z, -y]) if ax < az else np.array([y, -x, 0.0])
    return np.array([-z, 0.0, x]) if ay < az else np.array([y, -x, 0.0])


def shower_frame(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rows u, w, d: the unit shower axis d = ``direction``/|direction|, u =
    orthogonal(d) normalised, w = d × u (right-handed: u × w = d)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    u = clhep_orthogonal(d)
    u = u / np.linalg.norm(u)
    w = np.cross(d, u)
    return np.stack([u, w, d])


def energy_deposits(
    shower: np.ndarray, centres: np.ndarray, entry: np.ndarray, direction: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(positions (K, 3) mm, energies (K,) MeV) of the voxels of ``shower`` (V,) MeV with
    energy > 0, their shower-frame ``centres`` (V, 3) mm placed at ``entry`` (3,) mm along
    ``direction`` (3,), in voxel order."""
    values = np.asarray(shower, dtype=np.float64).reshape(-1)
    if values.shape[0] != centres.shape[0]:
        raise ValueError(f"shower has {values.shape[0]} voxels; centres {centres.shape[0]}")
    hit = values > 0
    frame = shower_frame(direction)
    positions = np.asarray(entry, dtype=np.float64)[None, :] + centres[hit] @ frame
    return positions, values[hit]


def voxel_index_of_positions(
    geometry: Geometry,
    layer_thickness_mm: Sequence[float],
    positions: np.ndarray,
    entry: np.ndarray,
    direction: np.ndarray,
) -> np.ndarray:
    """The voxel index (K,) of each deposit position (K, 3) mm of a shower that entered at
    ``entry`` along ``direction``, −1 where none: the inverse of :func:`energy_deposits`, by the
    binning itself (layer from the depth along the axis, radial bin from r, angular bin from α
    in the shower frame), not by nearest centre."""
    thickness = np.asarray(layer_thickness_mm, dtype=np.float64).reshape(-1)
    if thickness.shape != (geometry.n_layers,):
        raise ValueError(
            f"layer_thickness_mm: expected {geometry.n_layers} thicknesses, got {thickness.tolist()}"
        )
    local = (np.asarray(positions, dtype=np.float64).reshape(-1, 3) - np.asarray(entry)) @ (
        shower_frame(direction).T
    )
    x, y, z = local[:, 0], local[:, 1], local[:, 2]
    bounds = np.concatenate([[0.0], np.cumsum(thickness)])
    layer = np.searchsorted(bounds, z, side="right") - 1
    r, alpha = np.hypot(x, y), np.arctan2(y, x)
    out = np.full(len(local), -1, dtype=np.int64)
    for index, (spec, voxels) in enumerate(zip(geometry.layers, geometry.layer_slices)):
        mine = layer == index
        edges = np.asarray(spec.r_edges, dtype=np.float64)
        r_bin = np.searchsorted(edges, r[mine], side="right") - 1
        step = 2 * math.pi / spec.n_alpha
        a_bin = np.floor((alpha[mine] + math.pi) / step).astype(np.int64) % spec.n_alpha
        inside = (r_bin >= 0) & (r_bin < spec.n_r)
        out[np.flatnonzero(mine)[inside]] = voxels.start + a_bin[inside] * spec.n_r + r_bin[inside]
    return out


def event_noise(
    noise_contract: Sequence[Mapping[str, Any]], seed: int, event: int
) -> dict[str, np.ndarray]:
    """One event's noise (name → (1, width) float32) for a file's ``noise_contract``
    (:attr:`qcalo.export.OnnxShowerModel.noise_contract`): drawn in the contract's order from
    NumPy's generator seeded by ``(seed, event)``, standard normal or uniform on [0, 1) as the
    contract says. The same (seed, event) gives the same noise inside and outside Geant4."""
    rng = np.random.default_rng([int(seed), int(event)])
    out = {}
    for entry in noise_contract:
        shape = (1, int(entry["shape"][1]))
        if entry["distribution"] == "normal":
            out[str(entry["name"])] = rng.standard_normal(shape, dtype=np.float32)
        else:
            out[str(entry["name"])] = rng.random(shape, dtype=np.float32)
    return out


def stack_event_noise(
    noise_contract: Sequence[Mapping[str, Any]], seed: int, events: Sequence[int]
) -> dict[str, np.ndarray]:
    """:func:`event_noise` of several events, stacked (name → (len(events), width))."""
    per_event = [event_noise(noise_contract, seed, e) for e in events]
    return {
        str(entry["name"]): np.concatenate([n[str(entry["name"])] for n in per_event])
        for entry in noise_contract
    }


def geant4_environment(folder: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Set the environment so that ``import geant4_pybind`` and a run of
    :func:`run_geant4_photons` need no Geant4 data set; returns the variables it set.

    * ``GEANT4_DATA_DIR`` unset: the bindings' import asks (on stdin) to download the data sets;
      it is pointed at an empty ``folder``.
    * ``G4ENSDFSTATEDATA``: the run manager's constructor reads the nuclide table
      ``ENSDFSTATE.dat`` (excited states of ions) and aborts without it. No ion is ever made
      here, so where no real table is found it is pointed at an empty one in ``folder``.

    Variables already set, and a ``GEANT4_DATA_DIR`` holding the real data sets, are kept."""
    base = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "qcalo-geant4"
    changed: dict[str, str] = {}
    if not os.environ.get("GEANT4_DATA_DIR"):
        base.mkdir(parents=True, exist_ok=True)
        changed["GEANT4_DATA_DIR"] = str(base)
    data_dir = Path(os.environ.get("GEANT4_DATA_DIR") or changed["GEANT4_DATA_DIR"])
    has_table = any(data_dir.glob("G4ENSDFSTATE*/ENSDFSTATE.dat"))
    if not os.environ.get("G4ENSDFSTATEDATA") and not has_table:
        empty = base / "no-nuclide-table"
        empty.mkdir(parents=True, exist_ok=True)
        (empty / "ENSDFSTATE.dat").touch()
        changed["G4ENSDFSTATEDATA"] = str(empty)
    os.environ.update(changed)
    return changed


# --------------------------------------------------------------------------------------------
# The hook inside Geant4 (geant4_pybind, imported on first use)
# --------------------------------------------------------------------------------------------
@dataclass
class Geant4Event:
    """One photon through Geant4: its global ``event`` number (the noise key), ``energy_mev``,
    where it entered the calorimeter (``entry``, ``direction``), the model's ``shower`` (V,) MeV
    as the hook computed it, the deposits the sensitive detector received (``positions`` (K, 3)
    mm, ``energies`` (K,) MeV, ``copy_numbers`` (K,): the voxel index of the Geant4 volume the
    navigator found at each position), and wall times in seconds: ``event_s`` (the whole event,
    from primary generation to the end-of-event action), ``noise_s``, ``onnx_s`` (ONNX Runtime's
    ``run``) and ``deposit_s`` (placing, navigating and recording the deposits)."""

    event: int
    energy_mev: float
    entry: np.ndarray
    direction: np.ndarray
    shower: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    copy_numbers: np.ndarray
    event_s: float = 0.0
    noise_s: float = 0.0
    onnx_s: float = 0.0
    deposit_s: float = 0.0


@dataclass
class Geant4Run:
    """The events of :func:`run_geant4_photons`, in order, and the time Geant4's
    ``Initialize`` took (``init_s``, first call in the process only) and each ``BeamOn``
    (``beam_on_s``: energy → seconds for all its events)."""

    events: list[Geant4Event]
    n_voxels: int
    init_s: float = 0.0
    beam_on_s: dict[float, float] = field(default_factory=dict)

    def voxel_energies(self) -> np.ndarray:
        """(N, V) MeV: each event's deposits summed into voxels by the copy number of the
        Geant4 volume they landed in (−1, outside every voxel, is not counted)."""
        out = np.zeros((len(self.events), self.n_voxels), dtype=np.float64)
        for row, ev in zip(out, self.events):
            inside = ev.copy_numbers >= 0
            np.add.at(row, ev.copy_numbers[inside], ev.energies[inside])
        return out

    def deposited(self) -> np.ndarray:
        """(N,) MeV: the total energy each event's sensitive detector received."""
        return np.array([ev.energies.sum() for ev in self.events])


_APP: dict[str, Any] = {}


def _unit(v: Sequence[float]) -> np.ndarray:
    d = np.asarray(v, dtype=np.float64).reshape(3)
    return d / np.linalg.norm(d)


def _build_app(
    geometry: Geometry, layer_thickness_mm: Sequence[float], axis: Sequence[float]
) -> dict[str, Any]:
    """Geant4's run manager, world and user actions, built once per process (Geant4 allows one
    run manager)."""
    geant4_environment()
    import geant4_pybind as g4

    thickness = [float(t) for t in layer_thickness_mm]
    centres = voxel_centres(geometry, thickness)
    d = _unit(axis)
    frame = shower_frame(d)  # rows u, w, d: the calorimeter's local x, y, z in the world
    front_mm = 1000.0  # the calorimeter's front face centre is 1 m from the gun along the axis
    half_depth = sum(thickness) / 2
    radius = max(spec.r_edges[-1] for spec in geometry.layers)

    def vec(v: Sequence[float] | np.ndarray) -> Any:
        return g4.G4ThreeVector(float(v[0]), float(v[1]), float(v[2]))

    class Calorimeter(g4.G4VSensitiveDetector):
        """Receives the deposits; ``begin()`` empties its per-event list."""

        def __init__(self) -> None:
            super().__init__("qcalo_calorimeter")
            self.begin()

        def begin(self) -> None:
            self.positions: list[tuple[float, float, float]] = []
            self.energies: list[float] = []
            self.copies: list[int] = []

        def deposit(self, position: tuple[float, float, float], energy: float, copy: int) -> None:
            self.positions.append(position)
            self.energies.append(energy)
            self.copies.append(copy)

        def ProcessHits(self, step: Any, history: Any) -> bool:  # noqa: N802 (Geant4's name)
            return True  # no step is ever taken inside: the photon is killed on entry

    class Detector(g4.G4VUserDetectorConstruction):
        def Construct(self) -> Any:  # noqa: N802
            nist = g4.G4NistManager.Instance()  # built-in materials: no data set
            vacuum = nist.FindOrBuildMaterial("G4_Galactic")
            pbwo4 = nist.FindOrBuildMaterial("G4_PbWO4")
            keep: list[Any] = []  # Geant4 does not own Python-made objects: keep them alive
            world_lv = g4.G4LogicalVolume(g4.G4Box("world", 4000, 4000, 4000), vacuum, "world")
            env_solid = g4.G4Tubs("calo", 0, radius, half_depth, 0, 2 * math.pi)
            self.envelope = g4.G4LogicalVolume(env_solid, pbwo4, "calo")
            self.voxel_lvs = []
            z0 = -half_depth
            for index, (spec, voxels) in enumerate(zip(geometry.layers, geometry.layer_slices)):
                z_mid = z0 + sum(thickness[:index]) + thickness[index] / 2
                step = 2 * math.pi / spec.n_alpha
                for v in range(voxels.start, voxels.stop):
                    k = v - voxels.start
                    a_bin, r_bin = divmod(k, spec.n_r)
                    solid = g4.G4Tubs(
                        f"voxel{v}",
                        spec.r_edges[r_bin],
                        spec.r_edges[r_bin + 1],
                        thickness[index] / 2,
                        -math.pi + a_bin * step,
                        step,
                    )
                    lv = g4.G4LogicalVolume(solid, pbwo4, f"voxel{v}")
                    pv = g4.G4PVPlacement(
                        None, vec((0, 0, z_mid)), lv, f"voxel{v}", self.envelope, False, v
                    )
                    keep += [solid, pv]
                    self.voxel_lvs.append(lv)
            rotation = g4.G4RotationMatrix()
            rotation.rotateAxes(vec(frame[0]), vec(frame[1]), vec(frame[2]))
            centre = (front_mm + half_depth) * d
            placement = g4.G4PVPlacement(
                g4.G4Transform3D(rotation, vec(centre)), self.envelope, "calo", world_lv, False, 0
            )
            self.region = g4.G4Region("qcalo_calorimeter")
            self.region.AddRootLogicalVolume(self.envelope)
            self.world = g4.G4PVPlacement(None, vec((0, 0, 0)), world_lv, "world", None, False, 0)
            keep += [world_lv, env_solid, rotation, placement]
            self.keep = keep
            return self.world

        def ConstructSDandField(self) -> None:  # noqa: N802
            self.sd = Calorimeter()
            g4.G4SDManager.GetSDMpointer().AddNewDetector(self.sd)
            for lv in self.voxel_lvs:
                lv.SetSensitiveDetector(self.sd)

    class Physics(g4.G4VModularPhysicsList):
        """Transportation only (every modular list adds it): no physics tables, no data sets."""

        def ConstructParticle(self) -> None:  # noqa: N802
            g4.G4Gamma.Definition()
            g4.G4Geantino.Definition()

    class Gun(g4.G4VUserPrimaryGeneratorAction):
        def __init__(self) -> None:
            super().__init__()
            self.gun = g4.G4ParticleGun(1)
            self.gun.SetParticleDefinition(g4.G4Gamma.Definition())
            self.gun.SetParticlePosition(vec((0, 0, 0)))
            self.gun.SetParticleMomentumDirection(vec(d))
            self.next_event = 0
            self.t0 = 0.0

        def GeneratePrimaries(self, event: Any) -> None:  # noqa: N802
            self.t0 = time.perf_counter()
            self.event = self.next_event
            self.next_event += 1
            self.gun.GeneratePrimaryVertex(event)

    class Hook(g4.G4UserSteppingAction):
        """The fast-simulation model: acts on the step of a photon entering the region."""

        def __init__(self, detector: Detector, gun: Gun) -> None:
            super().__init__()
            self.detector, self.gun = detector, gun
            self.model: Any = None
            self.seed = 0
            self.navigator: Any = None
            self.error: BaseException | None = None
            self.record: dict[str, Any] | None = None

        def UserSteppingAction(self, step: Any) -> None:  # noqa: N802
            try:
                self._step(step)
            except BaseException as exc:  # an exception must not unwind through Geant4
                self.error = exc
                step.GetTrack().SetTrackStatus(g4.fStopAndKill)
                g4.G4RunManager.GetRunManager().AbortRun(True)

        def _step(self, step: Any) -> None:
            post = step.GetPostStepPoint()
            volume = post.GetTouchable().GetVolume()
            region = self.detector.region
            if volume is None or volume.GetLogicalVolume().GetRegion() is not region:
                return
            before = step.GetPreStepPoint().GetTouchable().GetVolume()
            if before.GetLogicalVolume().GetRegion() is region:
                return
            track = step.GetTrack()
            if track.GetDefinition().GetParticleName() != "gamma":
                return
            track.SetTrackStatus(g4.fStopAndKill)
            self._shower(post, track)

        def _shower(self, post: Any, track: Any) -> None:
            t0 = time.perf_counter()
            energy = float(track.GetKineticEnergy())  # Geant4's unit of energy is the MeV
            p, m = post.GetPosition(), post.GetMomentumDirection()
            entry = np.array([p.x, p.y, p.z])
            direction = np.array([m.x, m.y, m.z])
            noise = event_noise(self.model.noise_contract, self.seed, self.gun.event)
            t1 = time.perf_counter()
            shower = self.model.run(np.array([energy], dtype=np.float32), noise)[0]
            t2 = time.perf_counter()
            positions, energies = energy_deposits(shower, centres, entry, direction)
            if self.navigator is None:  # its own navigator, as G4FastSimHitMaker has
                self.navigator = g4.G4Navigator()
                self.navigator.SetWorldVolume(self.detector.world)
            for (x, y, z), e in zip(positions.tolist(), energies.tolist()):
                found = self.navigator.LocateGlobalPointAndSetup(
                    g4.G4ThreeVector(x, y, z), None, False, True
                )
                sd = found.GetLogicalVolume().GetSensitiveDetector()
                if sd is not None:
                    sd.deposit((x, y, z), e, found.GetCopyNo())
                else:  # outside every voxel: recorded, with copy number −1
                    self.detector.sd.deposit((x, y, z), e, -1)
            t3 = time.perf_counter()
            self.record = {
                "energy_mev": energy,
                "entry": entry,
                "direction": direction,
                "shower": shower,
                "noise_s": t1 - t0,
                "onnx_s": t2 - t1,
                "deposit_s": t3 - t2,
            }

    class Events(g4.G4UserEventAction):
        def __init__(self, detector: Detector, gun: Gun, hook: Hook) -> None:
            super().__init__()
            self.detector, self.gun, self.hook = detector, gun, hook
            self.events: list[Geant4Event] = []

        def BeginOfEventAction(self, event: Any) -> None:  # noqa: N802
            self.detector.sd.begin()
            self.hook.record = None

        def EndOfEventAction(self, event: Any) -> None:  # noqa: N802
            sd, record = self.detector.sd, self.hook.record
            if record is None:  # the photon never reached the calorimeter
                return
            self.events.append(
                Geant4Event(
                    event=self.gun.event,
                    positions=np.asarray(sd.positions, dtype=np.float64).reshape(-1, 3),
                    energies=np.asarray(sd.energies, dtype=np.float64),
                    copy_numbers=np.asarray(sd.copies, dtype=np.int64),
                    **record,
                    event_s=time.perf_counter() - self.gun.t0,
                )
            )

    class Actions(g4.G4VUserActionInitialization):
        def __init__(self, detector: Detector) -> None:
            super().__init__()
            self.detector = detector

        def Build(self) -> None:  # noqa: N802
            self.gun = Gun()
            self.hook = Hook(self.detector, self.gun)
            self.events = Events(self.detector, self.gun, self.hook)
            self.SetUserAction(self.gun)
            self.SetUserAction(self.hook)
            self.SetUserAction(self.events)

    run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
    ui = g4.G4UImanager.GetUIpointer()
    for command in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0"):
        ui.ApplyCommand(command)
    detector = Detector()
    actions = Actions(detector)
    run_manager.SetUserInitialization(detector)
    run_manager.SetUserInitialization(Physics())
    run_manager.SetUserInitialization(actions)
    t0 = time.perf_counter()
    run_manager.Initialize()
    init_s = time.perf_counter() - t0
    return {
        "g4": g4,
        "run_manager": run_manager,
        "detector": detector,
        "actions": actions,
        "geometry": geometry,
        "thickness": thickness,
        "axis": d,
        "init_s": init_s,
    }


def run_geant4_photons(
    model: Any,
    energies_mev: Sequence[float],
    events_per_energy: int,
    seed: int,
    *,
    geometry: str | os.PathLike[str] | Geometry = "photons",
    layer_thickness_mm: Sequence[float] | None = None,
    axis: Sequence[float] = (0.0, 0.0, 1.0),
) -> Geant4Run:
    """Shoot ``events_per_energy`` photons at each energy (MeV) along ``axis`` into a DS1
    calorimeter in Geant4, the exported ``model`` (:class:`qcalo.export.OnnxShowerModel`)
    replacing each shower, the noise of event i being :func:`event_noise` ``(seed, i)``.

    Needs ``geant4_pybind`` (the ``geant4`` extra). Geant4 allows one run manager per process:
    the first call builds it (world, calorimeter, actions) for its geometry, layer thicknesses
    (default 50 mm each) and axis, later calls reuse it and must pass the same ones; event
    numbers continue across calls."""
    g = load_geometry(geometry)
    if model.n_voxels != g.n_voxels:
        raise ValueError(f"the model makes {model.n_voxels} voxels; {g.name!r} has {g.n_voxels}")
    thickness = [float(t) for t in (layer_thickness_mm or [50.0] * g.n_layers)]
    init_s = 0.0
    if not _APP:
        _APP.update(_build_app(g, thickness, axis))
        init_s = _APP["init_s"]
    same = (
        _APP["geometry"].n_voxels == g.n_voxels
        and _APP["thickness"] == thickness
        and np.allclose(_APP["axis"], _unit(axis))
    )
    if not same:
        raise ValueError(
            "Geant4 was set up in this process for another geometry, layer thickness or axis; "
            "it allows one run manager per process"
        )
    actions, run_manager = _APP["actions"], _APP["run_manager"]
    hook = actions.hook
    hook.model, hook.seed, hook.error = model, int(seed), None
    first = len(actions.events.events)
    run = Geant4Run(events=[], n_voxels=g.n_voxels, init_s=init_s)
    g4 = _APP["g4"]
    for energy in energies_mev:
        actions.gun.gun.SetParticleEnergy(float(energy) * g4.MeV)
        t0 = time.perf_counter()
        run_manager.BeamOn(int(events_per_energy))
        run.beam_on_s[float(energy)] = time.perf_counter() - t0
        if hook.error is not None:
            raise hook.error
    run.events = actions.events.events[first:]
    return run
