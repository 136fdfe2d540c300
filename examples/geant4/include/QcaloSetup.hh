// Geometry, physics and scoring of the example: a world of vacuum, a calorimeter box (the
// fast-simulation envelope) whose sensitive detector sums every deposit by event, and a physics
// list with only transportation and the fast-simulation process (no Geant4 data sets needed).
#pragma once

#include "G4VFastSimSensitiveDetector.hh"
#include "G4VModularPhysicsList.hh"
#include "G4VSensitiveDetector.hh"
#include "G4VUserDetectorConstruction.hh"

class QcaloFastSimModel;

class QcaloCalorimeterSD : public G4VSensitiveDetector, public G4VFastSimSensitiveDetector {
 public:
  explicit QcaloCalorimeterSD(const G4String& name) : G4VSensitiveDetector(name) {}
  void Initialize(G4HCofThisEvent*) override { fEnergy = 0.0; fHits = 0; }
  G4bool ProcessHits(G4Step*, G4TouchableHistory*) override { return false; }
  G4bool ProcessHits(const G4FastHit* hit, const G4FastTrack*, G4TouchableHistory*) override;
  G4double EventEnergy() const { return fEnergy; }
  G4int EventHits() const { return fHits; }

 private:
  G4double fEnergy = 0.0;
  G4int fHits = 0;
};

class QcaloDetector : public G4VUserDetectorConstruction {
 public:
  QcaloDetector(std::string onnxPath, std::string centresCsv, unsigned long long seed)
      : fOnnxPath(std::move(onnxPath)), fCentresCsv(std::move(centresCsv)), fSeed(seed) {}
  G4VPhysicalVolume* Construct() override;
  void ConstructSDandField() override;
  QcaloCalorimeterSD* Calorimeter() const { return fSD; }
  QcaloFastSimModel* Model() const { return fModel; }

 private:
  std::string fOnnxPath, fCentresCsv;
  unsigned long long fSeed;
  G4LogicalVolume* fCalorimeter = nullptr;
  QcaloCalorimeterSD* fSD = nullptr;
  QcaloFastSimModel* fModel = nullptr;
};

class QcaloPhysics : public G4VModularPhysicsList {
 public:
  QcaloPhysics();
  void ConstructParticle() override;
};
