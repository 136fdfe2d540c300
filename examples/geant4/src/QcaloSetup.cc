#include "QcaloSetup.hh"

#include "G4Box.hh"
#include "G4FastHit.hh"
#include "G4FastSimulationPhysics.hh"
#include "G4Gamma.hh"
#include "G4Geantino.hh"
#include "G4LogicalVolume.hh"
#include "G4NistManager.hh"
#include "G4PVPlacement.hh"
#include "G4Region.hh"
#include "G4SDManager.hh"
#include "G4SystemOfUnits.hh"

#include "QcaloFastSimModel.hh"

G4bool QcaloCalorimeterSD::ProcessHits(const G4FastHit* hit, const G4FastTrack*, G4TouchableHistory*) {
  fEnergy += hit->GetEnergy();
  ++fHits;
  return true;
}

G4VPhysicalVolume* QcaloDetector::Construct() {
  auto* nist = G4NistManager::Instance();  // materials are built in: no data sets needed
  auto* vacuum = nist->FindOrBuildMaterial("G4_Galactic");
  auto* lead = nist->FindOrBuildMaterial("G4_PbWO4");
  auto* world = new G4LogicalVolume(new G4Box("world", 2 * m, 2 * m, 4 * m), vacuum, "world");
  // The calorimeter starts at z = 1 m: a photon shot along +z from the origin enters it there.
  fCalorimeter = new G4LogicalVolume(new G4Box("calo", 1 * m, 1 * m, 0.5 * m), lead, "calo");
  new G4PVPlacement(nullptr, G4ThreeVector(0, 0, 1.5 * m), fCalorimeter, "calo", world, false, 0);
  auto* region = new G4Region("calorimeter");
  region->AddRootLogicalVolume(fCalorimeter);
  return new G4PVPlacement(nullptr, {}, world, "world", nullptr, false, 0);
}

void QcaloDetector::ConstructSDandField() {
  fSD = new QcaloCalorimeterSD("calorimeter");
  G4SDManager::GetSDMpointer()->AddNewDetector(fSD);
  fCalorimeter->SetSensitiveDetector(fSD);
  auto* region = fCalorimeter->GetRegion();
  fModel = new QcaloFastSimModel("qcalo", region, fOnnxPath, fCentresCsv, fSeed);
}

QcaloPhysics::QcaloPhysics() {
  auto* fast = new G4FastSimulationPhysics();
  fast->ActivateFastSimulation("gamma");
  RegisterPhysics(fast);  // with the transportation every list adds: nothing else
}

void QcaloPhysics::ConstructParticle() {
  G4Gamma::Definition();
  G4Geantino::Definition();
}
