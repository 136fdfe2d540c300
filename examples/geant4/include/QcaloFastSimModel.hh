// G4VFastSimulationModel that replaces a photon's shower by a qcalo model exported to ONNX.
//
// When a photon enters the calorimeter envelope (the region this model is attached to), DoIt
// runs the model on its kinetic energy (MeV), places voxel v at
//   entry + x_v u + y_v w + z_v d
// (d the photon's direction, u = d.orthogonal().unit(), w = d × u; (x_v, y_v, z_v) the voxel
// centres in the shower frame, mm, from voxel_centres.csv), deposits each voxel's energy there
// through G4FastSimHitMaker, and kills the photon. qcalo.export.geant4 is this arithmetic in
// Python, tested against the binning XML.
#pragma once

#include <array>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "G4FastSimHitMaker.hh"
#include "G4VFastSimulationModel.hh"

#include "QcaloOnnxShower.hh"

class QcaloFastSimModel : public G4VFastSimulationModel {
 public:
  QcaloFastSimModel(const G4String& name, G4Region* envelope, const std::string& onnxPath,
                    const std::string& centresCsv, unsigned long long seed);

  G4bool IsApplicable(const G4ParticleDefinition& particle) override;
  G4bool ModelTrigger(const G4FastTrack& track) override;
  void DoIt(const G4FastTrack& track, G4FastStep& step) override;

  // Voxel energies (MeV) of the last shower, for the comparison with `qcalo generate`.
  const std::vector<float>& LastShower() const { return fLastShower; }

 private:
  std::vector<std::array<double, 3>> fCentres;  // (V, 3) mm, shower frame
  std::unique_ptr<QcaloOnnxShower> fShower;
  std::unique_ptr<G4FastSimHitMaker> fHitMaker;
  std::mt19937_64 fEngine;
  std::vector<float> fLastShower;
};
