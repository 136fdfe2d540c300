// qcalo_fastsim MODEL.onnx voxel_centres.csv OUT.csv N E1 [E2 ...]
//
// Shoots N photons at each energy (MeV) along +z into the calorimeter; the fast-simulation model
// replaces each shower by the exported qcalo model. Writes one line per event (energy in MeV,
// deposited MeV, number of hits, wall time of the event in ms) and the event's voxel energies,
// and prints the mean time per shower of the whole Geant4 event.
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>

#include "G4Event.hh"
#include "G4ParticleGun.hh"
#include "G4Gamma.hh"
#include "G4RunManagerFactory.hh"
#include "G4SystemOfUnits.hh"
#include "G4UserEventAction.hh"
#include "G4VUserActionInitialization.hh"
#include "G4VUserPrimaryGeneratorAction.hh"

#include "QcaloFastSimModel.hh"
#include "QcaloSetup.hh"

namespace {
struct Gun : G4VUserPrimaryGeneratorAction {
  G4ParticleGun gun{1};
  Gun() {
    gun.SetParticleDefinition(G4Gamma::Definition());
    gun.SetParticlePosition({0, 0, 0});
    gun.SetParticleMomentumDirection({0, 0, 1});
  }
  void GeneratePrimaries(G4Event* event) override { gun.GeneratePrimaryVertex(event); }
};

struct Events : G4UserEventAction {
  const QcaloDetector* detector;
  std::ofstream* out;
  Gun* gun;
  std::chrono::steady_clock::time_point start;
  double totalMs = 0.0;
  long events = 0;
  Events(const QcaloDetector* d, std::ofstream* o, Gun* g) : detector(d), out(o), gun(g) {}
  void BeginOfEventAction(const G4Event*) override { start = std::chrono::steady_clock::now(); }
  void EndOfEventAction(const G4Event*) override {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    totalMs += ms;
    ++events;
    *out << gun->gun.GetParticleEnergy() / MeV << ',' << detector->Calorimeter()->EventEnergy() / MeV << ','
         << detector->Calorimeter()->EventHits() << ',' << ms;
    for (float e : detector->Model()->LastShower()) *out << ',' << e;
    *out << '\n';
  }
};

struct Actions : G4VUserActionInitialization {
  const QcaloDetector* detector;
  std::ofstream* out;
  mutable Gun* gun = nullptr;
  mutable Events* events = nullptr;
  Actions(const QcaloDetector* d, std::ofstream* o) : detector(d), out(o) {}
  void Build() const override {
    gun = new Gun();
    events = new Events(detector, out, gun);
    SetUserAction(gun);
    SetUserAction(events);
  }
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::cerr << "usage: qcalo_fastsim MODEL.onnx voxel_centres.csv OUT.csv N E1 [E2 ...]\n";
    return 2;
  }
  std::ofstream out(argv[3]);
  auto* runManager = G4RunManagerFactory::CreateRunManager(G4RunManagerType::Serial);
  auto* detector = new QcaloDetector(argv[1], argv[2], 12345ULL);
  runManager->SetUserInitialization(detector);
  runManager->SetUserInitialization(new QcaloPhysics());
  auto* actions = new Actions(detector, &out);
  runManager->SetUserInitialization(actions);
  runManager->Initialize();
  const int n = std::stoi(argv[4]);
  for (int i = 5; i < argc; ++i) {
    actions->gun->gun.SetParticleEnergy(std::stod(argv[i]) * MeV);
    runManager->BeamOn(n);
  }
  std::cout << "mean time per shower (whole Geant4 event): "
            << actions->events->totalMs / actions->events->events << " ms over "
            << actions->events->events << " events\n";
  delete runManager;
  return 0;
}
