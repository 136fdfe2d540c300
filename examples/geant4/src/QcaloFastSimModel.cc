#include "QcaloFastSimModel.hh"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "G4FastHit.hh"
#include "G4FastStep.hh"
#include "G4FastTrack.hh"
#include "G4Gamma.hh"
#include "G4SystemOfUnits.hh"

namespace {
std::vector<std::array<double, 3>> ReadCentres(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open (write it with write_voxel_centres.py)");
  std::vector<std::array<double, 3>> centres;
  std::string line;
  std::getline(in, line);  // header x_mm,y_mm,z_mm
  while (std::getline(in, line)) {
    std::array<double, 3> c{};
    char comma;
    std::istringstream(line) >> c[0] >> comma >> c[1] >> comma >> c[2];
    centres.push_back(c);
  }
  return centres;
}
}  // namespace

QcaloFastSimModel::QcaloFastSimModel(const G4String& name, G4Region* envelope,
                                     const std::string& onnxPath, const std::string& centresCsv,
                                     unsigned long long seed)
    : G4VFastSimulationModel(name, envelope),
      fCentres(ReadCentres(centresCsv)),
      fHitMaker(std::make_unique<G4FastSimHitMaker>()),
      fEngine(seed) {
  fShower = std::make_unique<QcaloOnnxShower>(onnxPath, static_cast<int64_t>(fCentres.size()));
}

G4bool QcaloFastSimModel::IsApplicable(const G4ParticleDefinition& particle) {
  return &particle == G4Gamma::Definition();
}

G4bool QcaloFastSimModel::ModelTrigger(const G4FastTrack&) { return true; }  // on entering

void QcaloFastSimModel::DoIt(const G4FastTrack& track, G4FastStep& step) {
  const G4Track* photon = track.GetPrimaryTrack();
  const G4double energy = photon->GetKineticEnergy();
  const G4ThreeVector entry = photon->GetPosition();
  const G4ThreeVector d = photon->GetMomentumDirection().unit();
  const G4ThreeVector u = d.orthogonal().unit();
  const G4ThreeVector w = d.cross(u);

  fLastShower = fShower->Generate(static_cast<float>(energy / MeV), fEngine);
  G4double deposited = 0.0;
  for (std::size_t v = 0; v < fCentres.size(); ++v) {
    const G4double e = fLastShower[v] * MeV;
    if (e <= 0.0) continue;
    const auto& c = fCentres[v];
    const G4ThreeVector position = entry + c[0] * mm * u + c[1] * mm * w + c[2] * mm * d;
    fHitMaker->make(G4FastHit(position, e), track);
    deposited += e;
  }
  step.KillPrimaryTrack();
  step.ProposePrimaryTrackPathLength(0.0);
  step.ProposeTotalEnergyDeposited(deposited);
}
